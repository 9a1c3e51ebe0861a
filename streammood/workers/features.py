"""``features``: an audio file to an ``.npz`` of per-step features, offline or via the live path.

``offline`` decodes the whole file and calls :func:`~streammood.features.extractor.extract_offline`;
``stream`` pushes the file block by block through the live path (``FileSource`` →
``StreamingExtractor``). Both write the same arrays (equal to float tolerance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streammood.errors import StreammoodError
from streammood.features.extractor import FeatureSet, ModelInputs, extract_offline

__all__ = ["MODES", "FeaturesError", "compute_features", "write_features"]

MODES = ("offline", "stream")


class FeaturesError(StreammoodError):
    """The features command cannot run as asked (bad mode, unwritable output)."""


def _stream(path: Path, progress: bool) -> FeatureSet:
    from streammood.audio.decode import file_info
    from streammood.audio.sources import FileSource
    from streammood.features.extractor import StreamingExtractor
    from streammood.layout import STEP_SECONDS

    total = None
    try:
        info = file_info(path)
        total = int(info.frames / info.sample_rate / STEP_SECONDS) or None
    except (StreammoodError, AttributeError, ZeroDivisionError):
        pass
    out: list[ModelInputs] = []
    with (
        FileSource(path) as source,
        StreamingExtractor(source.sample_rate) as extractor,
        _Progress(progress and total is not None and total > 120, total, path.name) as bar,
    ):
        for block in source:
            done = extractor.push(block)
            bar.advance(len(done))
            out += done
        out += extractor.finish()
    return FeatureSet.from_steps(out)


class _Progress:
    """A rich progress bar over steps, or nothing."""

    def __init__(self, enabled: bool, total: int | None, label: str) -> None:
        self._bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._task = self._bar.add_task(f"{label} (steps)", total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None and steps:
            self._bar.advance(self._task, steps)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def compute_features(path: str | Path, mode: str = "offline", progress: bool = False) -> FeatureSet:
    """Features of every whole 500 ms step of an audio file.

    Parameters
    ----------
    path : str or Path
        Audio file (anything :func:`streammood.audio.decode.load_audio` reads).
    mode : {"offline", "stream"}
        Whole file at once, or step by step through the live path.
    progress : bool
        Show a progress bar (stream mode, files over a minute).

    Returns
    -------
    FeatureSet
        ``floor(duration / 0.5)`` steps.
    """
    path = Path(path)
    if mode not in MODES:
        raise FeaturesError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "stream":
        return _stream(path, progress)
    from streammood.audio.decode import load_audio

    y, sr = load_audio(path)
    return extract_offline(y, sr)


def write_features(
    path: str | Path, out: str | Path, mode: str = "offline", progress: bool = False
) -> FeatureSet:
    """Compute a file's features and save them to ``out`` (``.npz``).

    The archive holds ``mfcc (steps, 21, 20)``, ``lld (steps, 260)``, ``lld_names (260,)``,
    ``seq (steps,)``, ``t_start (steps,)`` seconds, ``patch_steps (k,)`` and
    ``mel_patches (k, 187, 96)``.
    """
    out = Path(out)
    if out.suffix != ".npz":
        raise FeaturesError(f"{out}: output must be a .npz file")
    if not out.parent.exists():
        raise FeaturesError(f"{out}: folder {out.parent} does not exist")
    fs = compute_features(path, mode=mode, progress=progress)
    try:
        np.savez(out, **fs.arrays())
    except OSError as exc:
        raise FeaturesError(f"{out}: cannot write: {exc.strerror or exc}") from None
    return fs
