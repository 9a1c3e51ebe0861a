"""What the research probes share: paths, the research-only embedders, the 4Q clips and their
musicnn input, the window statistics of the training cache, and one artist-grouped
cross-validation loop with its table cell.

Nothing in ``streammood`` imports this module; it is the probes' own code.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from streammood.layout import MEL_BANDS, MEL_HOP, MEL_N_FFT, MEL_PATCH_FRAMES, MEL_RATE

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""
DATA_DIR = ROOT.parent / "shared" / "data" / "4q"
"""The 4Q data set (``--data-dir`` default of every probe)."""
CACHE = ROOT / ".cache"
"""Where the probes cache their embeddings (beside the training feature cache)."""

MSD_MTT_TFLITE = ROOT / "models" / "musicnn" / "msd_mtt.tflite"
"""MSD + MTT musicnn embedder (400 values per patch): feature layout v4's, now research only
(``probe_musicnn``, ``benchmarks/bench_musicnn.py``)."""
MSD_TFLITE = ROOT / "models" / "musicnn" / "msd.tflite"
"""MSD-only musicnn embedder (200 values per patch): feature layout v3's, now research only."""


# --- the 4Q clips as musicnn sees them --------------------------------------------------------


def read_clips(data_dir: Path) -> list[tuple[str, str, int, Path]]:
    """``(song, artist, quadrant 0..3, path)`` of each clip, sorted by song."""
    with open(data_dir / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    clips = []
    for row in rows:
        path = data_dir / row["Quadrant"] / f"{row['Song']}.mp3"
        if path.is_file():
            clips.append((row["Song"], row["Artist"], int(row["Quadrant"][1]) - 1, path))
    return sorted(clips)


def log_mel(path: Path) -> np.ndarray:
    """musicnn's input: ``(frames, 96)`` float32 ``log10(10000 mel + 1)`` at 16 kHz."""
    import librosa

    y, _ = librosa.load(path, sr=MEL_RATE, mono=True)
    mel = librosa.feature.melspectrogram(
        y=y, sr=MEL_RATE, n_fft=MEL_N_FFT, hop_length=MEL_HOP, n_mels=MEL_BANDS, center=False
    )
    return np.log10(np.float32(10000) * mel.T.astype(np.float32) + np.float32(1))


def patches(logmel: np.ndarray, hop: int) -> np.ndarray:
    """``(k, 187, 96)`` patches starting every ``hop`` frames."""
    starts = range(0, logmel.shape[0] - MEL_PATCH_FRAMES + 1, hop)
    return np.stack([logmel[s : s + MEL_PATCH_FRAMES] for s in starts])


# --- window statistics of the training cache ---------------------------------------------------


def window_stats(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean and std over the real steps: ``(N, T, F)``, ``(N, T)`` → ``(N, 2F)``."""
    m = mask[..., None].astype(np.float64)
    n = m.sum(axis=1)
    mean = (x * m).sum(axis=1) / n
    std = np.sqrt(np.maximum((x * x * m).sum(axis=1) / n - mean**2, 0.0))
    return np.concatenate([mean, std], axis=1)


def feature_stats(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per window the statistics of each feature: ``E`` embedding ``(N, 2D)``, ``L`` LLD
    statistics ``(N, 520)``, ``M`` MFCCs (frames averaged) ``(N, 40)``."""
    mask = arrays["mask"]
    return {
        "E": window_stats(arrays["emb"], mask),
        "L": window_stats(arrays["lld"], mask),
        "M": window_stats(arrays["mfcc"].mean(axis=2), mask),
    }


def load_seen(data_dir: Path, jobs: int) -> dict[str, np.ndarray]:
    """The train+validation songs of split seed 0 (its test songs are never loaded into a probe)."""
    from streammood.datasets.splits import split_by_group
    from streammood.training.pipeline import load_dataset, subset

    arrays = load_dataset("4q", data_dir, "classification", None, jobs)
    seen_idx, _ = split_by_group(arrays["label"], arrays["group"], 0.2, 0)
    return subset(arrays, seen_idx)


# --- one cross-validation loop -----------------------------------------------------------------


def cv_macro_f1(
    y: np.ndarray,
    groups: np.ndarray,
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    seeds: int,
) -> list[float]:
    """Macro-F1 of 5-fold StratifiedGroupKFold (by ``groups``), one value per seed: the pooled
    out-of-fold predictions ``predict(train_idx, test_idx) -> (n_test,)`` labels."""
    scores = []
    for seed in range(seeds):
        pred = np.zeros_like(y)
        folds = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
        for tr, te in folds.split(np.zeros(len(y)), y, groups):
            pred[te] = predict(tr, te)
        scores.append(f1_score(y, pred, average="macro"))
    return scores


def probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float, seeds: int) -> list[float]:
    """:func:`cv_macro_f1` of standardise → logistic regression (inverse L2 strength ``c``)."""

    def predict(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        return clf.fit(x[tr], y[tr]).predict(x[te])

    return cv_macro_f1(y, groups, predict, seeds)


def mean_sd(scores: list[float]) -> str:
    """``"0.723 ± 0.005"``: a table cell."""
    return f"{np.mean(scores):.3f} ± {np.std(scores):.3f}"
