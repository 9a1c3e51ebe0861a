"""Training settings: plain data, no TensorFlow (the CLI builds them before anything heavy)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streammood.layout import EARLY_PATCH_STEP, EMBED_EVERY, FEATURE_VERSION
from streammood.training.modelconfig import ModelConfig

FEATURES_NOTE = (
    f"feature layout v{FEATURE_VERSION}: per 500 ms step an MFCC block (21, 20), 260 openSMILE "
    "ComParE_2016 LLD/delta statistics, and a pretrained embedding of the 3 s ending at the step "
    "(656 values: musicnn MSD + MTT penultimate layers and the MSD VGG's last pooled map), "
    f"refreshed every {EMBED_EVERY}th step, at step {EARLY_PATCH_STEP} (the first 3 s) and at "
    "each detected change (the new segment's first 3 s)"
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Epoch counts are upper bounds (early stopping decides)."""

    task: str = "classification"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    split_seed: int = 0
    test_size: float = 0.2
    val_size: float = 0.2
    epochs: int = 200
    patience: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    step_weight_power: float = 1.0
    """Per-step loss weight ``((t + 1) / T) ** power``: every prefix of the window is trained
    (the live path publishes prefixes before 60 steps), the full window most; 0 weighs all
    steps alike."""
    pooled_first: bool = True
    """Train the pooled read-out alone first, then the whole model (see ``fit_member``)."""
    stage2_lr_scale: float = 0.05
    """Learning rate of the second stage, relative to ``learning_rate``."""
    distill: bool = True
    """Ship one student distilled from the ensemble instead of the ensemble itself: the live
    step then runs one sequence core (60 staggered LSTM states) instead of one per member."""
    distill_alpha: float = 1.0
    """Student targets: ``(1 - alpha) * label + alpha * ensemble output``, per step (1: the
    student's LSTM branch copies the ensemble; at least as good as 0.5 on two splits)."""
    refit: bool = False
    """After the held-out evaluation, train the shipped model once more on every song, test
    songs included, with the epochs found before (see ``train.refit_all``); the reported test
    figures are then those of its held-out twin."""
    stream_augment: bool = False
    """Train for streams: every member's (and the student's) training songs also as windows
    begun at later patch steps and as pairs spliced at random steps, per-step targets the song
    playing (:mod:`streammood.training.augment`); validation stays whole clips."""
    splice_share: float = 0.5
    """Spliced windows per training window (with ``stream_augment``)."""
    model: ModelConfig = field(default_factory=ModelConfig)
