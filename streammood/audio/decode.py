"""Decode audio files (MP3, WAV, FLAC, OGG via libsndfile) to mono float32 at the native rate.

Every failure a user can cause (missing, empty, corrupt or non-audio file, no samples) raises
:class:`AudioError` with a one-line message naming the file. Non-finite samples (NaN, ±inf, possible
in float WAVs) are replaced by 0 and a warning is logged once per file: one bad sample should not
stop a live stream, and 0 is what a muted input would give.

libmpg123 (the MP3 decoder inside libsndfile) prints its complaints about damaged frames straight to
file descriptor 2, one line per frame. Those lines are captured around each native open and read
call (:func:`streammood.native.filter_native_stderr`), counted per file in
:class:`DecoderMessages`, and reported once per file as one logged warning with the count;
anything else written to stderr meanwhile is passed through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf

from streammood.errors import StreammoodError
from streammood.native import filter_native_stderr

log = logging.getLogger(__name__)

__all__ = [
    "AudioError",
    "AudioFileInfo",
    "DecoderMessages",
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


_MPG123_LINE = re.compile(rb"^(?:\[[^\]]*libmpg123/[^\]]*\] |(?:Note|Warning): )")
"""libmpg123's messages: ``[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: ...`` and its
parser's ``Note: Illegal Audio-MPEG-Header ...`` / ``Warning: Xing stream size off ...``."""

_MPG123_FRAME_ERROR = re.compile(rb"^\[[^\]]*libmpg123/layer\d\.c:[^\]]*\] error: ")
"""One frame the layer decoder could not decode cleanly (e.g. ``part2_3_length (1600) too large
for available bit count (1568)``); libmpg123 conceals it and goes on."""


def _is_decoder_line(line: bytes) -> bool:
    return _MPG123_LINE.match(line) is not None


class DecoderMessages:
    """What the MP3 decoder printed about one file, counted, then reported once in one line.

    Parameters
    ----------
    name : str or Path
        The file as named in the report.

    Attributes
    ----------
    frame_errors : int
        Frames libmpg123 could not decode cleanly; it conceals each (a frame of the 22.05 kHz
        MPEG-2 clips is 576 samples, 26 ms) and decoding goes on.
    other : int
        Its other messages (resyncs over damaged bytes, header warnings).
    first_other : str or None
        The first of those, quoted in the report.
    reported : bool
        The report has been logged (it is logged once).
    """

    def __init__(self, name: str | Path) -> None:
        self.name = str(name)
        self.frame_errors = 0
        self.other = 0
        self.first_other: str | None = None
        self.reported = False

    @property
    def count(self) -> int:
        """All messages, frame errors included."""
        return self.frame_errors + self.other

    def add(self, lines: list[bytes]) -> None:
        """Count captured decoder lines (bytes, without line endings)."""
        for line in lines:
            if _MPG123_FRAME_ERROR.match(line):
                self.frame_errors += 1
            else:
                self.other += 1
                if self.first_other is None:
                    self.first_other = line.decode("utf-8", "replace")

    def summary(self) -> str | None:
        """The one-line report, or ``None`` when the decoder said nothing."""
        if not self.count:
            return None
        parts = []
        if self.frame_errors:
            n = self.frame_errors
            parts.append(f"{n} MP3 frame{'s' if n != 1 else ''} had decode errors")
        if self.other:
            n = self.other
            parts.append(f"{n} {'other ' if parts else ''}decoder message{'s' if n != 1 else ''}")
        detail = "libmpg123" if not self.other else f"libmpg123, first: {self.first_other!r}"
        return f"{self.name}: {', '.join(parts)} ({detail}); audio decoded anyway"

    def report(self) -> None:
        """Log :meth:`summary` as a warning, the first time there is one to log."""
        if self.reported or not self.count:
            return
        self.reported = True
        log.warning("%s", self.summary())


T = TypeVar("T")


def _native(call: Callable[[], T], messages: DecoderMessages) -> T:
    """A libsndfile call with libmpg123's stderr lines counted into ``messages``."""
    result, noise = filter_native_stderr(call, _is_decoder_line)
    messages.add(noise)
    return result


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


def open_audio_file(path: str | Path, messages: DecoderMessages | None = None) -> sf.SoundFile:
    """Open an audio file for block reading, with a clear error for every user mistake.

    Parameters
    ----------
    path : str or Path
    messages : DecoderMessages, optional
        Collects what the decoder prints while opening (the caller reports it); without it, that
        is reported here.

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
    collect = messages if messages is not None else DecoderMessages(path)
    try:
        f = _native(lambda: sf.SoundFile(str(path)), collect)
    except sf.LibsndfileError as exc:
        # libsndfile's own strings mislead here ("File does not exist" for a text file named .mp3).
        raise AudioError(
            f"{path}: cannot decode: not a recognised audio format, or the file is corrupt "
            f"(libsndfile error {exc.code})"
        ) from None
    except (sf.SoundFileError, OSError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot open audio file: {_one_line(exc)}") from None
    if messages is None:
        collect.report()
    return f


DECODE_FRAMES = 1 << 16
"""Frames per libsndfile read. Fixed, because MP3 samples differ in the last bit with the read
size; every path re-blocks these reads, so file and stream decoding are bit-identical."""


def iter_blocks(
    f: sf.SoundFile,
    block_frames: int,
    path: str | Path | None = None,
    messages: DecoderMessages | None = None,
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
    messages : DecoderMessages, optional
        Collects the decoder's messages; the caller reports them. Without it, they are reported
        when the iteration ends or is closed.

    Yields
    ------
    np.ndarray
        ``(<= block_frames,)`` float32 blocks; non-finite samples replaced by 0 (logged once).
    """
    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    name = path if path is not None else f.name
    collect = messages if messages is not None else DecoderMessages(name)
    pending = np.zeros(0, np.float32)
    try:
        for chunk in _decode_chunks(f, name, collect):
            pending = chunk if pending.size == 0 else np.concatenate([pending, chunk])
            n_whole = pending.size // block_frames * block_frames
            for i in range(0, n_whole, block_frames):
                yield pending[i : i + block_frames]
            pending = pending[n_whole:]
        if pending.size:
            yield pending
    finally:
        if messages is None:
            collect.report()


def _decode_chunks(
    f: sf.SoundFile, name: str | Path, messages: DecoderMessages
) -> Iterator[np.ndarray]:
    bad = 0
    while True:
        try:
            block = _native(
                lambda: f.read(DECODE_FRAMES, dtype="float32", always_2d=True), messages
            )
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


def load_audio(
    path: str | Path, messages: DecoderMessages | None = None
) -> tuple[np.ndarray, int]:
    """Decode a whole file to mono float32 at its native rate.

    Parameters
    ----------
    path : str or Path
        MP3, WAV (8/16/24/32-bit int or float), FLAC, OGG...; any rate, any channel count.
    messages : DecoderMessages, optional
        Collects the decoder's complaints for the caller to report (e.g. one line for many
        files); without it they are reported here, once.

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

    Notes
    -----
    MP3 frames the decoder could not decode cleanly are reported in one logged warning per
    file, with their count (see :class:`DecoderMessages`).
    """
    own = messages is None
    messages = DecoderMessages(path) if messages is None else messages
    try:
        with open_audio_file(path, messages) as f:
            sr = int(f.samplerate)
            blocks = list(_decode_chunks(f, path, messages))
    finally:
        if own:
            messages.report()
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
