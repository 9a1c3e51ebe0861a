"""The NumPy window and mel filterbanks equal librosa's to the bit, and the feature paths no
longer import librosa."""

import subprocess
import sys

import librosa
import numpy as np
import pytest

from streammood.features.filters import hann_window, mel_filterbank


@pytest.mark.parametrize("n", [512, 2048, 1000, 7])
def test_hann_equals_librosa(n):
    theirs = librosa.filters.get_window("hann", n, fftbins=True)
    np.testing.assert_array_equal(hann_window(n), theirs)


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels"), [(16_000, 512, 96), (22_050, 2_048, 128), (44_100, 1_024, 40)]
)
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels):
    ours = mel_filterbank(sr, n_fft, n_mels)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def test_feature_blocks_do_not_import_librosa():
    """A step's MFCC block and mel frames are computed without librosa in the process."""
    code = (
        "import sys, numpy as np\n"
        "from streammood.features.mfcc import mfcc_block\n"
        "from streammood.features.mel import log_mel_frames\n"
        "b = mfcc_block(np.zeros(1575, np.float32), np.ones(11025, np.float32))\n"
        "m = log_mel_frames(np.ones(8000, np.float32))\n"
        "assert b.shape == (21, 20) and m.shape == (30, 96)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'librosa'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
