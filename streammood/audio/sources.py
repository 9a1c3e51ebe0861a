"""Audio sources behind one interface: a sound device (PortAudio via ``sounddevice``) or a file.

Iterating a source yields mono float32 ``(n,)`` blocks at ``source.sample_rate`` Hz. Both kinds
feed the same :class:`~streammood.audio.framer.Framer`. After each block, ``source.captured_at``
is the wall-clock time (Unix s) at which the block's last sample was captured: PortAudio's ADC
time of the block for a device (mapped to the wall clock), the pacing clock for a file read in
real time, and the time the block was read for a file read faster than real time.

``sounddevice`` is imported lazily: without ``libportaudio2`` it raises ``OSError`` on import, which
becomes a :class:`DeviceError` only when a device is actually used, so files work without it.
PortAudio reads its configuration (e.g. ``ALSA_CONFIG_PATH``) when ``sounddevice`` is first
imported.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streammood.audio.decode import (
    AudioError,
    DecoderMessages,
    iter_blocks,
    open_audio_file,
    to_mono,
)
from streammood.errors import StreammoodError

log = logging.getLogger(__name__)

__all__ = [
    "AudioSource",
    "DeviceError",
    "DeviceSource",
    "FileSource",
    "InputDevice",
    "SourceStats",
    "list_input_devices",
    "open_source",
]


BLOCK_SECONDS = 0.02
"""Default block length, seconds. Small blocks cut latency: a step's exact features wait for
~120 ms of the next audio (openSMILE's look-ahead) plus up to one block; 20 ms blocks gave p99
189 ms from a step's end to a subscriber, 50 ms blocks 209 ms, at ~35 vs ~26 ms of CPU per step
(docs/benchmarks.md, "Live tagging")."""


class DeviceError(StreammoodError):
    """A sound device cannot be used (unknown, no PortAudio, unsupported settings, stopped)."""


@dataclass
class SourceStats:
    """Counters of a source; problems are counted, never silent.

    Attributes
    ----------
    blocks, samples : int
        Blocks and samples delivered to the consumer.
    overflows, underflows : int
        PortAudio callbacks flagged ``input_overflow`` / ``input_underflow`` (audio lost by the
        device or driver).
    dropped_blocks, dropped_samples : int
        Captured blocks thrown away because the consumer fell behind and the queue was full.
    """

    blocks: int = 0
    samples: int = 0
    overflows: int = 0
    underflows: int = 0
    dropped_blocks: int = 0
    dropped_samples: int = 0

    @property
    def problems(self) -> int:
        """Overflows + underflows + dropped blocks."""
        return self.overflows + self.underflows + self.dropped_blocks


@runtime_checkable
class AudioSource(Protocol):
    """What the framer and the workers need from a source."""

    name: str
    """Human-readable name (file path or device name)."""
    sample_rate: int
    """Hz of the blocks yielded."""
    captured_at: float | None
    """Wall clock (Unix s) at which the last sample of the block just yielded was captured."""

    @property
    def stats(self) -> SourceStats: ...

    def __iter__(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class InputDevice:
    """A PortAudio input device.

    Attributes
    ----------
    index : int
        PortAudio device index (what ``--device N`` takes).
    name : str
    channels : int
        Maximum input channels.
    default_rate : float
        Default (native) sample rate, Hz.
    hostapi : str
        e.g. ``ALSA``, ``JACK Audio Connection Kit``.
    is_default : bool
        The system's default input device.
    """

    index: int
    name: str
    channels: int
    default_rate: float
    hostapi: str = ""
    is_default: bool = False


# --- files -----------------------------------------------------------------------------------


class FileSource:
    """Decode a file block by block (MP3, WAV, FLAC, OGG; any rate and channel count), mono.

    Parameters
    ----------
    path : str or Path
    realtime : bool
        Pace blocks in real time, as a device would deliver them (``--realtime``); otherwise as
        fast as the consumer takes them.
    block_seconds : float
        Block length, seconds.

    Raises
    ------
    AudioError
        At construction for a missing, empty or undecodable file; while iterating for a file
        that turns out corrupt or has no samples.

    Notes
    -----
    MP3 frames the decoder could not decode cleanly are reported once per file, in one logged
    warning with their count, when the iteration ends or at :meth:`close`.
    """

    def __init__(
        self, path: str | Path, realtime: bool = False, block_seconds: float = BLOCK_SECONDS
    ) -> None:
        if block_seconds <= 0:
            raise ValueError(f"block_seconds must be > 0, got {block_seconds}")
        self.path = Path(path)
        self.name = str(path)
        self.realtime = realtime
        self._messages = DecoderMessages(self.name)
        self._file = open_audio_file(self.path, self._messages)
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.block_frames = max(1, round(self.sample_rate * block_seconds))
        self._stats = SourceStats()
        self._iterating = False
        self.captured_at: float | None = None

    @property
    def stats(self) -> SourceStats:
        return replace(self._stats)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._iterating or self._file.closed:
            raise RuntimeError(f"{self.name}: a FileSource can be iterated once")
        self._iterating = True
        t0 = time.monotonic()
        wall0 = time.time()
        for block in iter_blocks(self._file, self.block_frames, self.name, self._messages):
            if self.realtime:
                ahead = (self._stats.samples + block.size) / self.sample_rate
                delay = t0 + ahead - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.captured_at = wall0 + ahead  # the pacing clock
            else:
                self.captured_at = time.time()  # read now, faster than real time
            self._stats.blocks += 1
            self._stats.samples += block.size
            yield block
        self._messages.report()
        if self._stats.samples == 0:
            raise AudioError(f"{self.name}: no audio samples (zero-length audio)")

    def close(self) -> None:
        self._file.close()
        self._messages.report()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- devices ---------------------------------------------------------------------------------


def _sounddevice() -> ModuleType:
    """Import ``sounddevice`` (initialises PortAudio) or explain why it cannot be used."""
    try:
        import sounddevice
    except OSError as exc:  # "PortAudio library not found"
        raise DeviceError(
            f"cannot use sound devices: {exc} (install the Debian package libportaudio2)"
        ) from None
    return sounddevice


def list_input_devices() -> list[InputDevice]:
    """The PortAudio devices that have input channels.

    Returns
    -------
    list of InputDevice
        In PortAudio index order (may be empty on a machine without sound hardware).

    Raises
    ------
    DeviceError
        PortAudio is not installed.
    """
    sd = _sounddevice()
    hostapis = sd.query_hostapis()
    try:
        default_in = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        default_in = -1
    out = []
    for dev in sd.query_devices():
        if dev["max_input_channels"] <= 0:
            continue
        out.append(
            InputDevice(
                index=int(dev["index"]),
                name=str(dev["name"]),
                channels=int(dev["max_input_channels"]),
                default_rate=float(dev["default_samplerate"]),
                hostapi=str(hostapis[dev["hostapi"]]["name"]),
                is_default=int(dev["index"]) == default_in,
            )
        )
    return out


def _available(devices: list[InputDevice]) -> str:
    if not devices:
        return "no input devices found"
    return "available input devices: " + "; ".join(f"{d.index}: {d.name}" for d in devices)


def resolve_input_device(device: int | str | None) -> InputDevice:
    """Find an input device by index, exact name, or unique case-insensitive substring.

    Parameters
    ----------
    device : int, str or None
        ``None`` is the system default input device; a string of digits is an index.

    Raises
    ------
    DeviceError
        Unknown, ambiguous, or output-only device; the message lists the input devices.
    """
    devices = list_input_devices()
    if device is None:
        for d in devices:
            if d.is_default:
                return d
        if devices:
            return devices[0]
        raise DeviceError(f"no default input device: {_available(devices)}")
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        index = int(device)
        for d in devices:
            if d.index == index:
                return d
        raise DeviceError(f"input device {index} not found: {_available(devices)}")
    want = str(device).strip()
    exact = [d for d in devices if d.name == want]
    if len(exact) == 1:
        return exact[0]
    matches = exact or [d for d in devices if want.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(f"input device {want!r} not found: {_available(devices)}")
    raise DeviceError(
        f"input device {want!r} is ambiguous, matches: "
        + "; ".join(f"{d.index}: {d.name}" for d in matches)
        + " (use the index)"
    )


class DeviceSource:
    """Capture from a sound device through PortAudio.

    The PortAudio callback only copies the block into a bounded queue (``put_nowait``); status
    flags and blocks dropped because the queue was full are counted in :attr:`stats` and logged
    (the first time, then every ``log_every`` problems). Capture runs from the first iteration
    until :meth:`close`.

    Parameters
    ----------
    device : int, str or None
        Index, name or unique substring of a name (see :func:`resolve_input_device`);
        ``None``: the default input device.
    samplerate : int, optional
        Requested rate, Hz. When the device does not support it (PortAudio error -9997), capture
        runs at the device's default (native) rate instead; resample in software afterwards.
        ``None``: the native rate.
    block_seconds : float
        PortAudio block length, seconds.
    queue_blocks : int
        Queue capacity, blocks (the default holds 3 s of 20 ms blocks).
    log_every : int
        Log a warning at the first problem and then once every this many.
    dtype : {"int16", "float32"}
        Sample format asked of PortAudio. int16 (the default) is what every device supports and
        converts exactly (``x / 32768``); ALSA's ``file`` plugin under ``plug`` skips audio when
        asked for float32, so the capture tests need it.

    Attributes
    ----------
    sample_rate : int
        The rate actually captured, Hz.
    channels : int
        Channels captured (averaged to mono).
    """

    def __init__(
        self,
        device: int | str | None = None,
        samplerate: int | None = None,
        block_seconds: float = BLOCK_SECONDS,
        queue_blocks: int = 150,
        log_every: int = 50,
        dtype: str = "int16",
    ) -> None:
        if block_seconds <= 0:
            raise ValueError(f"block_seconds must be > 0, got {block_seconds}")
        if queue_blocks < 1:
            raise ValueError(f"queue_blocks must be >= 1, got {queue_blocks}")
        if dtype not in ("int16", "float32"):
            raise ValueError(f"dtype must be 'int16' or 'float32', got {dtype!r}")
        self.dtype = dtype
        self._sd = _sounddevice()
        self.device = resolve_input_device(device)
        self.name = self.device.name
        self.requested_rate = samplerate
        self.channels, self.sample_rate = self._negotiate(samplerate)
        self.block_frames = max(1, round(self.sample_rate * block_seconds))
        self.log_every = max(1, int(log_every))
        self._queue: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue(
            maxsize=queue_blocks
        )
        self._stats = SourceStats()
        self.captured_at: float | None = None
        self._clock = _AdcClock()
        self.on_block: Callable[[np.ndarray, float], None] | None = None
        """When set (before :meth:`start`), the callback hands each block (a copy, in the
        device's dtype and channels) and its ``captured_at`` to it instead of the queue; it must
        not block (e.g. :meth:`~streammood.audio.mux.Inbox.put`)."""
        self._stream: Any = None
        self._closed = False
        self._logged_problems = 0

    def _negotiate(self, samplerate: int | None) -> tuple[int, int]:
        """Pick channels (mono if the device allows) and a supported rate."""
        sd = self._sd
        dev = self.device
        native = round(dev.default_rate)
        rates = [native] if samplerate is None else [int(samplerate), native]
        channel_options = sorted({1, min(2, dev.channels), dev.channels})
        last: Exception | None = None
        for rate in rates:
            for ch in channel_options:
                try:
                    sd.check_input_settings(
                        device=dev.index, channels=ch, dtype=self.dtype, samplerate=rate
                    )
                except (sd.PortAudioError, ValueError) as exc:
                    last = exc
                    continue
                if rate != rates[0]:
                    log.info(
                        "%s: %d Hz not supported (%s); capturing at the native %d Hz",
                        dev.name,
                        rates[0],
                        last,
                        rate,
                    )
                return ch, rate
        raise DeviceError(
            f"input device {dev.index} ({dev.name}): no supported capture settings "
            f"at {' or '.join(f'{r} Hz' for r in rates)}: {last}"
        )

    @property
    def stats(self) -> SourceStats:
        return replace(self._stats)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs on PortAudio's thread: count, copy, never block.
        if status:
            if status.input_overflow:
                self._stats.overflows += 1
            if status.input_underflow:
                self._stats.underflows += 1
        stamp = self._clock.stamp(time_info, frames, self.sample_rate)
        if self.on_block is not None:
            self._stats.blocks += 1
            self._stats.samples += frames
            self.on_block(indata.copy(), stamp)
            return
        try:
            self._queue.put_nowait((indata.copy(), stamp))
        except queue.Full:
            self._stats.dropped_blocks += 1
            self._stats.dropped_samples += frames

    @property
    def active(self) -> bool:
        """The PortAudio stream is running."""
        return self._stream is not None and bool(self._stream.active)

    def start(self) -> None:
        """Open and start the PortAudio stream (iteration does this itself)."""
        if self._stream is not None:
            return
        if self._closed:
            raise RuntimeError(f"{self.name}: source is closed")
        sd = self._sd
        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                channels=self.channels,
                samplerate=self.sample_rate,
                dtype=self.dtype,
                blocksize=self.block_frames,
                callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self._stream = None
            raise DeviceError(
                f"input device {self.device.index} ({self.name}): cannot start capture at "
                f"{self.sample_rate} Hz: {exc}"
            ) from None

    def __iter__(self) -> Iterator[np.ndarray]:
        self.start()
        while True:
            try:
                block = self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._closed:
                    return
                if self._stream is None or not self._stream.active:
                    raise DeviceError(
                        f"input device {self.device.index} ({self.name}): capture stopped"
                    ) from None
                continue
            if block is None or self._closed:  # close() sentinel, or closed meanwhile
                return
            block, self.captured_at = block
            if block.dtype == np.int16:
                block = block.astype(np.float32) * np.float32(1 / 32768)
            y = to_mono(block)
            self._stats.blocks += 1  # consumer-side counters; the callback only writes the others
            self._stats.samples += y.size
            self._report()
            yield y

    def _report(self) -> None:
        s = self._stats
        problems = s.problems
        if problems and problems - self._logged_problems >= (
            1 if self._logged_problems == 0 else self.log_every
        ):
            self._logged_problems = problems
            log.warning(
                "%s: audio lost: %d input overflows, %d underflows, %d blocks dropped "
                "(consumer too slow, queue full)",
                self.name,
                s.overflows,
                s.underflows,
                s.dropped_blocks,
            )

    def close(self) -> None:
        """Stop capture; a pending iteration ends."""
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            try:
                self._stream.abort()
                self._stream.close()
            except self._sd.PortAudioError as exc:  # pragma: no cover - device vanished
                log.warning("%s: closing the stream failed: %s", self.name, exc)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def __enter__(self) -> DeviceSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AdcClock:
    """PortAudio's stream clock mapped to the wall clock, for ``captured_at``.

    A callback reports the ADC time of its block's first sample and the stream time when
    PortAudio called it (``currentTime``); Python code runs a little later (it waits for the
    GIL), so ``time.time() - currentTime`` overestimates the offset between the two clocks by
    that wait. The smallest offset seen is the best estimate; it is kept, so a late callback
    does not make its block look late. Host APIs that report no ADC time (0) give the arrival
    time."""

    def __init__(self) -> None:
        self.offset: float | None = None

    def stamp(self, time_info: Any, frames: int, rate: int) -> float:
        """Wall clock (Unix s) at which the last of ``frames`` samples was captured."""
        now = time.time()
        try:
            adc = float(time_info.inputBufferAdcTime)
            current = float(time_info.currentTime)
        except (AttributeError, TypeError, ValueError):
            return now
        if adc <= 0.0 or current <= 0.0 or not 0.0 <= current - adc < 10.0:
            return now
        offset = now - current
        if self.offset is None or offset < self.offset:
            self.offset = offset
        return adc + self.offset + (frames - 1) / rate


def open_source(
    device: int | str | None = None,
    file: str | Path | None = None,
    realtime: bool = False,
    samplerate: int | None = None,
) -> FileSource | DeviceSource:
    """Open a file if ``file`` is given, else a sound device (``None``: the default input).

    Parameters
    ----------
    device : int, str or None
        See :class:`DeviceSource`.
    file : str or Path, optional
        See :class:`FileSource`.
    realtime : bool
        Pace a file in real time (ignored for devices, which are real time anyway).
    samplerate : int, optional
        Requested device rate, Hz (the native rate when unsupported or ``None``).

    Raises
    ------
    StreammoodError
        Both a file and a device given; :class:`AudioError`, :class:`DeviceError`.
    """
    if file is not None and device is not None:
        raise StreammoodError(f"give a file ({file}) or a device ({device}), not both")
    if file is not None:
        return FileSource(file, realtime=realtime)
    return DeviceSource(device, samplerate=samplerate)
