"""Model hyper-parameters and normalisation statistics: plain data, no TensorFlow, so that
artifacts, CLI and data code can use them without importing the training stack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammood.layout import N_LLD_STATS, N_MFCC

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class NormStats:
    """Per-feature training statistics, stored in the model artifact (never recomputed live).

    ``mfcc_*`` have shape ``(20,)`` (per coefficient), ``lld_*`` ``(260,)``, ``emb_*`` ``(D,)``.
    """

    mfcc_mean: np.ndarray
    mfcc_std: np.ndarray
    lld_mean: np.ndarray
    lld_std: np.ndarray
    emb_mean: np.ndarray
    emb_std: np.ndarray

    @classmethod
    def fit(cls, mfcc: np.ndarray, lld: np.ndarray, emb: np.ndarray) -> NormStats:
        """Statistics of training arrays ``(B, T, 21, 20)``, ``(B, T, 260)``, ``(B, T, D)``."""

        def stats(x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
            flat = np.asarray(x, np.float64).reshape(-1, width)
            std = flat.std(axis=0)
            return flat.mean(axis=0).astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(
                np.float32
            )

        return cls(*stats(mfcc, N_MFCC), *stats(lld, N_LLD_STATS), *stats(emb, emb.shape[-1]))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, np.float32) for k, v in self.__dict__.items()}

    @property
    def emb_dim(self) -> int:
        return int(self.emb_mean.shape[0])


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one model."""

    task: str = "classification"
    input_dropout: float = 0.5
    """Dropout on the per-step input of the LSTMs."""
    head_dropout: float = 0.7
    """Dropout in the LSTM branch's head."""
    pooled_dropout: float = 0.2
    """Dropout on the running-mean embedding before its linear read-out."""
    pooled_l2: float = 0.003
    """L2 penalty on the pooled branch's read-out weights."""
    use_lstm: bool = True
    use_pooled: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {self.task!r}")

    @property
    def n_outputs(self) -> int:
        return 4 if self.task == "classification" else 2
