"""Feature layout: the constants every path (offline, streaming, training, serving) shares.

Bump :data:`FEATURE_VERSION` whenever anything here, or the way a feature is computed, changes:
caches and model artifacts are keyed by it.
"""

from __future__ import annotations

FEATURE_VERSION = "6"
# v1: openSMILE's input ended at the last whole step offline; v2: it also gets the audio after the
# last whole step (as the live path, which writes audio ahead), so a clip's last step matches live;
# v3: a mel patch (and so a fresh embedding) every 8th step instead of every 4th.
# v4: the embedding is MSD + MTT (400 values) and a mel patch comes every 10th step.
# v5: the embedding adds the MSD VGG's (256 values: 656 in all).
# v6: an early patch at step 5 (the stream's first 3 s), and with a change detector a patch at
#     the step each change is detected (the new segment's first 3 s).

STEP_SECONDS = 0.5
"""Length of one step, seconds."""
WINDOW_STEPS = 60
"""Steps in the model's rolling window (30 s)."""

# MFCC block (librosa), DESIGN.md
MFCC_RATE = 22_050
"""Sample rate of the MFCC path, Hz."""
MFCC_STEP_SAMPLES = 11_025
"""New samples per step at :data:`MFCC_RATE`."""
MFCC_HISTORY = 1_575
"""Samples of the previous step prepended to each step (zeros before the first)."""
N_MFCC = 20
MFCC_FRAMES = 21
MFCC_N_FFT = 2_048
MFCC_HOP = 525

# openSMILE ComParE_2016 LLDs + deltas, mean and std per step
SMILE_RATE = 16_000
"""Sample rate of the openSMILE path, Hz."""
SMILE_STEP_SAMPLES = 8_000
N_LLD = 65
N_LLD_STATS = 260
"""65 LLDs + 65 deltas, mean and std of each."""

# musicnn mel patch (pretrained embedding branch)
MEL_RATE = 16_000
MEL_N_FFT = 512
MEL_HOP = 256
MEL_BANDS = 96
MEL_PATCH_FRAMES = 187
"""Mel frames in one ~3 s patch."""
EMBED_EVERY = 10
"""A fresh pretrained embedding every this many steps (a 3 s patch every 5 s): musicnn MSD + MTT
and the MSD VGG cost ~55 ms per patch (~100 ms on a slow day), so ~5.5 ms per step on average."""
EARLY_PATCH_STEP = 5
"""One more patch at this step, the first whose 3 s patch is all the stream's audio (steps 0-5):
the first real opinion comes after 3 s, not 5 s."""
