"""Decode audio files (MP3, WAV, FLAC, OGG via libsndfile) to mono float32 at the native rate.

Every failure a user can cause (missing, empty, corrupt or non-audio file, no samples) raises
:class:`AudioError` with a one-line message naming the file. Non-finite samples (NaN, ±inf, possible
in float WAVs) are replaced by 0 and a warning is logged once per file: one bad sample should not
stop a live stream, and 0 is what a muted input would give.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from streammood.errors import StreammoodError

log = logging.getLogger(__name__)

__all__ = [
    "AudioError",
    "AudioFileInfo",
    "file_info",
    "iter_blocks",
    "load_audio",
    "open_audio_file",
    "to_mono",
]


class AudioError(StreammoodError):
    """An audio file cannot be used (missing, empty, corrupt, not audio, no samples)."""


class AudioFileInfo:
    """Format of an opened audio file.

    Attributes
    ----------
    path : Path
    sample_rate : int
        Native sample rate, Hz.
    channels : int
    frames : int
        Frames announced by the header (an estimate for truncated MP3s; the decoded count rules).
    """

    __slots__ = ("path", "sample_rate", "channels", "frames", "format")

    def __init__(self, path: Path, sample_rate: int, channels: int, frames: int, format: str):
        self.path = path
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames = frames
        self.format = format

    def __repr__(self) -> str:
        return (
            f"AudioFileInfo({str(self.path)!r}, sample_rate={self.sample_rate}, "
            f"channels={self.channels}, frames={self.frames}, format={self.format!r})"
        )


def to_mono(y: np.ndarray) -> np.ndarray:
    """Mean over channels.

    Parameters
    ----------
    y : np.ndarray
        ``(n,)`` or ``(n, channels)`` samples.

    Returns
    -------
    np.ndarray
        ``(n,)`` float32, C-contiguous.
    """
    y = np.asarray(y)
    if y.ndim == 2:
        y = y[:, 0] if y.shape[1] == 1 else y.mean(axis=1, dtype=np.float64)
    elif y.ndim != 1:
        raise ValueError(f"expected (n,) or (n, channels) samples, got shape {y.shape}")
    return np.ascontiguousarray(y, dtype=np.float32)


def open_audio_file(path: str | Path) -> sf.SoundFile:
    """Open an audio file for block reading, with a clear error for every user mistake.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    soundfile.SoundFile
        Opened for reading; the caller closes it.

    Raises
    ------
    AudioError
        Missing, not a regular file, empty (0 bytes), or not decodable.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        return sf.SoundFile(str(path))
    except sf.LibsndfileError as exc:
        # libsndfile's own strings mislead here ("File does not exist" for a text file named .mp3).
        raise AudioError(
            f"{path}: cannot decode: not a recognised audio format, or the file is corrupt "
            f"(libsndfile error {exc.code})"
        ) from None
    except (sf.SoundFileError, OSError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot open audio file: {_one_line(exc)}") from None


DECODE_FRAMES = 1 << 16
"""Frames per libsndfile read. Fixed, because MP3 samples differ in the last bit with the read
size; every path re-blocks these reads, so file and stream decoding are bit-identical."""


def iter_blocks(
    f: sf.SoundFile, block_frames: int, path: str | Path | None = None
) -> Iterator[np.ndarray]:
    """Decode an opened file block by block, mono float32.

    Reads :data:`DECODE_FRAMES` at a time whatever ``block_frames`` is, so the samples do not
    depend on the block size. Stops at the first empty read: a truncated MP3 yields the audio
    that is there.

    Parameters
    ----------
    f : soundfile.SoundFile
        From :func:`open_audio_file`.
    block_frames : int
        Frames per block (the last block may be shorter).
    path : str or Path, optional
        Name used in errors and warnings (defaults to ``f.name``).

    Yields
    ------
    np.ndarray
        ``(<= block_frames,)`` float32 blocks; non-finite samples replaced by 0 (logged once).
    """
    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    pending = np.zeros(0, np.float32)
    for chunk in _decode_chunks(f, path if path is not None else f.name):
        pending = chunk if pending.size == 0 else np.concatenate([pending, chunk])
        n_whole = pending.size // block_frames * block_frames
        for i in range(0, n_whole, block_frames):
            yield pending[i : i + block_frames]
        pending = pending[n_whole:]
    if pending.size:
        yield pending


def _decode_chunks(f: sf.SoundFile, name: str | Path) -> Iterator[np.ndarray]:
    bad = 0
    while True:
        try:
            block = f.read(DECODE_FRAMES, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioError(f"{name}: decoding failed mid-file: {_one_line(exc)}") from None
        if len(block) == 0:
            break
        y = to_mono(block)
        finite = np.isfinite(y)
        if not finite.all():
            if bad == 0:
                log.warning("%s: non-finite samples (NaN/inf) replaced by 0", name)
            bad += int((~finite).sum())
            y = np.where(finite, y, np.float32(0.0))
        yield y
    if bad:
        log.warning("%s: %d non-finite samples replaced by 0 in all", name, bad)


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a whole file to mono float32 at its native rate.

    Parameters
    ----------
    path : str or Path
        MP3, WAV (8/16/24/32-bit int or float), FLAC, OGG...; any rate, any channel count.

    Returns
    -------
    y : np.ndarray
        ``(n,)`` float32 samples, mean of the channels, non-finite samples replaced by 0.
        Not clipped: decoded MP3s may exceed 1.0.
    sr : int
        Native sample rate, Hz.

    Raises
    ------
    AudioError
        Missing, empty, corrupt or non-audio file, or a file with no samples.
    """
    with open_audio_file(path) as f:
        sr = int(f.samplerate)
        blocks = list(_decode_chunks(f, path))
    if not blocks:
        raise AudioError(f"{path}: no audio samples (zero-length audio)")
    y = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return y, sr


def file_info(path: str | Path) -> AudioFileInfo:
    """Format of an audio file without decoding it (see :class:`AudioFileInfo`)."""
    with open_audio_file(path) as f:
        return AudioFileInfo(
            Path(path), int(f.samplerate), int(f.channels), int(f.frames), f.format
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
