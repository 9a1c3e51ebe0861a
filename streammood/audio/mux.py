"""Many audio sources in one process: what a ``sources.toml`` names, and one I/O thread that
reads them all into one inbox.

``[[source]]`` tables (:func:`load_sources`)::

    [[source]]
    id = "radio1"
    url = "http://127.0.0.1:8000/stream.mp3"   # ffmpeg: Icecast/Shoutcast, HLS, RTMP, UDP/RTP

    [[source]]
    id = "studio"
    device = 0            # index or name (PortAudio)
    samplerate = 48000    # optional

    [[source]]
    id = "jingles"
    file = "jingles.mp3"  # relative to the sources file
    realtime = true       # default: paced like a live source
    loop = true           # start over at the end (default false)

One thread (``streammood-io``, :class:`SourceMux`) paces the files, waits on every URL's
``ffmpeg`` pipe with a selector and watches the devices (whose PortAudio callbacks put their
blocks in the inbox themselves). Every block lands in the :class:`Inbox` with the wall clock of
its last sample (``captured_at``) and an *epoch*: the epoch goes up whenever the audio that
follows is not continuous with what came before (a URL reconnected, a device reopened, or the
consumer fell so far behind that the oldest audio was dropped), so the consumer starts the
source's features afresh and lets its stream time jump by the gap. A source that fails is
retried with exponential backoff (URLs and devices), or reported and dropped (a missing or
corrupt file), without touching the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
import time
import tomllib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streammood.audio.decode import AudioError, DecoderMessages, iter_blocks, open_audio_file
from streammood.audio.network import FFMPEG_RATE, UrlStream
from streammood.errors import StreammoodError

log = logging.getLogger(__name__)

__all__ = [
    "Inbox",
    "SourceMux",
    "SourceSpec",
    "SourcesError",
    "load_sources",
    "parse_sources",
]

CHUNK_SECONDS = 0.1
"""Audio read per file block and pushed per source at once, s: fewer, larger pushes cost less
(resampler calls, openSMILE wake-ups, Python per block) and add at most this to the latency."""
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 30.0
"""A connection that delivered audio this long resets the backoff to its start."""


class SourcesError(StreammoodError):
    """A sources file that cannot be used (syntax, missing or conflicting keys)."""


@dataclass(frozen=True)
class SourceSpec:
    """One source of a sources file.

    Attributes
    ----------
    id : str
        Source id (messages, keys).
    kind : {"device", "file", "url"}
    target : int or str
        Device index or name, file path, or URL.
    realtime : bool
        Files: paced in real time (default) or read as fast as they are tagged.
    loop : bool
        Files: start over at the end.
    samplerate : int or None
        Devices: requested rate, Hz (the native rate when unsupported).
    retries : int or None
        Reconnects allowed after a failure (None: without end; files are never retried).
    """

    id: str
    kind: str
    target: int | str
    realtime: bool = True
    loop: bool = False
    samplerate: int | None = None
    retries: int | None = None


_KEYS = {"id", "device", "file", "url", "realtime", "loop", "samplerate", "retries"}


def parse_sources(data: dict[str, Any], base: Path | None = None) -> list[SourceSpec]:
    """Sources from a decoded TOML document (``{"source": [tables]}``).

    Parameters
    ----------
    data : dict
        The document.
    base : Path, optional
        Folder that relative file paths are relative to.

    Raises
    ------
    SourcesError
        No sources, unknown keys, not exactly one of device/file/url, repeated ids, bad types.
    """
    tables = data.get("source")
    if not isinstance(tables, list) or not tables:
        raise SourcesError("no [[source]] tables")
    out, seen = [], set()
    for i, t in enumerate(tables, 1):
        where = f"source {i}"
        if not isinstance(t, dict):
            raise SourcesError(f"{where}: not a table")
        unknown = sorted(set(t) - _KEYS)
        if unknown:
            raise SourcesError(f"{where}: unknown key(s) {', '.join(unknown)}")
        sid = t.get("id")
        if not isinstance(sid, str) or not sid:
            raise SourcesError(f"{where}: needs an id (a string)")
        where = f"source {sid!r}"
        if sid in seen:
            raise SourcesError(f"{where}: id used twice")
        seen.add(sid)
        kinds = [k for k in ("device", "file", "url") if k in t]
        if len(kinds) != 1:
            raise SourcesError(f"{where}: give exactly one of device, file, url")
        kind = kinds[0]
        target = t[kind]
        if kind == "device" and (isinstance(target, bool) or not isinstance(target, int | str)):
            raise SourcesError(f"{where}: device must be an index or a name")
        if kind != "device" and (not isinstance(target, str) or not target):
            raise SourcesError(f"{where}: {kind} must be a non-empty string")
        if kind == "file" and base is not None and not Path(target).is_absolute():
            target = str(base / target)
        for key in ("realtime", "loop"):
            if key in t and not isinstance(t[key], bool):
                raise SourcesError(f"{where}: {key} must be true or false")
        if ("realtime" in t or "loop" in t) and kind != "file":
            raise SourcesError(f"{where}: realtime and loop are for files")
        rate = t.get("samplerate")
        if rate is not None and (
            kind != "device" or isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0
        ):
            raise SourcesError(f"{where}: samplerate is a positive integer, for devices")
        retries = t.get("retries")
        if retries is not None and (
            isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
        ):
            raise SourcesError(f"{where}: retries must be an integer >= 0")
        out.append(
            SourceSpec(
                id=sid,
                kind=kind,
                target=target,
                realtime=t.get("realtime", True),
                loop=t.get("loop", False),
                samplerate=rate,
                retries=0 if kind == "file" else retries,
            )
        )
    return out


def load_sources(path: str | Path) -> list[SourceSpec]:
    """Read a sources file (see the module docstring).

    Raises
    ------
    SourcesError
        Missing, not TOML, or not valid (:func:`parse_sources`).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SourcesError(f"{path}: sources file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise SourcesError(f"{path}: not a valid TOML file: {exc}") from None
    try:
        return parse_sources(data, path.resolve().parent)
    except SourcesError as exc:
        raise SourcesError(f"{path}: {exc}") from None


# --- the inbox ---------------------------------------------------------------------------------


@dataclass
class Chunk:
    """Audio of one source: ``(n,)`` float32 (or int16 from a device) mono at ``rate`` Hz;
    ``captured_at`` is the wall clock of its last sample; ``epoch`` as in the module docstring."""

    block: np.ndarray
    rate: int
    captured_at: float
    epoch: int


@dataclass
class Taken:
    """What :meth:`Inbox.take` returns: audio per source (with a gap flag when older audio was
    dropped), sources that ended (with the error, or None), sources to poll."""

    audio: dict[int, tuple[list[Chunk], bool]] = field(default_factory=dict)
    ended: dict[int, str | None] = field(default_factory=dict)
    woken: set[int] = field(default_factory=set)


class Inbox:
    """Where every source's audio waits for the one consumer thread; never blocks a producer.

    Parameters
    ----------
    n : int
        Sources (keys ``0 .. n-1``).
    max_backlog_s : float
        Audio a live source may have waiting, s; beyond it the oldest is dropped (down to a
        quarter of it: one gap that buys the consumer time, not a gap per chunk while it is
        behind, each making the source start afresh), counted, and the source's next chunk
        flagged as after a gap. Lossless sources (files read faster than real time) are never
        dropped: their reader waits instead (:meth:`backlog`).
    """

    def __init__(self, n: int, max_backlog_s: float = 8.0) -> None:
        self.max_backlog_s = float(max_backlog_s)
        self._cond = threading.Condition()
        self._audio: list[deque[Chunk]] = [deque() for _ in range(n)]
        self._seconds = [0.0] * n
        self._gap = [False] * n
        self._lossless = [False] * n
        self.dropped_seconds = [0.0] * n
        """Audio dropped per source because the consumer fell behind, s."""
        self._ended: dict[int, str | None] = {}
        self._woken: set[int] = set()

    def set_lossless(self, key: int, lossless: bool = True) -> None:
        self._lossless[key] = lossless

    def put(self, key: int, block: np.ndarray, rate: int, captured_at: float, epoch: int) -> None:
        """Add audio of source ``key`` (any thread, never blocks)."""
        if block.size == 0:
            return
        with self._cond:
            q = self._audio[key]
            q.append(Chunk(block, rate, captured_at, epoch))
            self._seconds[key] += len(block) / rate
            if not self._lossless[key] and self._seconds[key] > self.max_backlog_s:
                while self._seconds[key] > self.max_backlog_s / 4 and len(q) > 1:
                    old = q.popleft()
                    self._seconds[key] -= len(old.block) / old.rate
                    self.dropped_seconds[key] += len(old.block) / old.rate
                    self._gap[key] = True
            self._cond.notify()

    def end(self, key: int, error: str | None = None) -> None:
        """Source ``key`` ended (``error``: why it failed) after the audio already put."""
        with self._cond:
            self._ended[key] = error
            self._cond.notify()

    def wake(self, key: int) -> None:
        """Ask the consumer to look at source ``key`` (e.g. an embedding it waits for is done)."""
        with self._cond:
            self._woken.add(key)
            self._cond.notify()

    def backlog(self, key: int) -> float:
        """Audio of source ``key`` waiting, s."""
        with self._cond:
            return self._seconds[key]

    def take(self, timeout: float) -> Taken:
        """Everything that arrived (waits up to ``timeout`` s for something)."""
        with self._cond:
            if not (any(self._audio) or self._ended or self._woken):
                self._cond.wait(timeout)
            out = Taken()
            for key, q in enumerate(self._audio):
                if q:
                    out.audio[key] = (list(q), self._gap[key])
                    q.clear()
                    self._seconds[key] = 0.0
                    self._gap[key] = False
            out.ended, self._ended = self._ended, {}
            out.woken, self._woken = self._woken, set()
            return out


# --- the readers -------------------------------------------------------------------------------


class _Feed:
    """One source as the I/O thread drives it."""

    def __init__(self, key: int, spec: SourceSpec, inbox: Inbox) -> None:
        self.key = key
        self.spec = spec
        self.inbox = inbox
        self.epoch = 0
        self.failures = 0
        self.reconnects = 0
        self.backoff = BACKOFF_START_S
        self.retry_at: float | None = 0.0  # monotonic; 0: open now; None: no retry pending
        self.done = False
        self.last_error: str | None = None

    def audio_lost(self) -> tuple[int, int]:
        """``(overflows, underflows)`` the device reported so far (0 for files and URLs)."""
        return 0, 0

    def fail(self, reason: str, now: float) -> None:
        """The source failed: retry after the backoff, or give it up."""
        self.failures += 1
        self.last_error = reason
        self.close()
        allowed = 0 if self.spec.kind == "file" else self.spec.retries
        if allowed is not None and self.failures > allowed:
            log.warning("source %s: %s; giving up", self.spec.id, reason)
            self.done = True
            self.inbox.end(self.key, reason)
            return
        log.warning("source %s: %s; retrying in %.0f s", self.spec.id, reason, self.backoff)
        self.retry_at = now + self.backoff
        self.backoff = min(BACKOFF_MAX_S, self.backoff * 2)
        self.epoch += 1

    def due(self) -> float | None:
        """Monotonic time of this feed's next piece of work (None: only its fds)."""
        return self.retry_at

    def open(self, sel: selectors.BaseSelector, now: float) -> None: ...

    def work(self, sel: selectors.BaseSelector, now: float) -> None: ...

    def readable(self, fd: int, sel: selectors.BaseSelector, now: float) -> None: ...

    def close(self, sel: selectors.BaseSelector | None = None) -> None: ...


class _FileFeed(_Feed):
    def __init__(self, key: int, spec: SourceSpec, inbox: Inbox) -> None:
        super().__init__(key, spec, inbox)
        inbox.set_lossless(key, not spec.realtime)
        self._file: Any = None
        self._blocks: Iterator[np.ndarray] | None = None
        self._messages = DecoderMessages(str(spec.target))
        self.rate = 0
        self._t0 = 0.0
        self._wall0 = 0.0
        self._samples = 0
        self._frames = 1
        self._next: float | None = None

    def due(self) -> float | None:
        return self.retry_at if self.retry_at is not None else self._next

    def _reopen(self) -> None:
        self._file = open_audio_file(self.spec.target, self._messages)
        rate = int(self._file.samplerate)
        if self.rate and rate != self.rate:  # pragma: no cover - the file changed under us
            raise AudioError(f"{self.spec.target}: sample rate changed to {rate} Hz")
        self.rate = rate
        self._frames = max(1, round(rate * CHUNK_SECONDS))
        self._blocks = iter_blocks(self._file, self._frames, str(self.spec.target), self._messages)

    def open(self, sel: selectors.BaseSelector, now: float) -> None:
        self.retry_at = None
        try:
            self._reopen()
        except AudioError as exc:
            self.fail(str(exc), now)
            return
        self._t0, self._wall0, self._samples = now, time.time(), 0
        # a real-time file hands a block over when its last sample is due, as a device would
        self._next = now + self._frames / self.rate if self.spec.realtime else now

    def work(self, sel: selectors.BaseSelector, now: float) -> None:
        if self.retry_at is not None:
            if now >= self.retry_at:
                self.open(sel, now)
            return
        if not self.spec.realtime and self.inbox.backlog(self.key) > 1.0:
            self._next = now + 0.01  # the consumer has enough: wait for it
            return
        # a realtime file catches up with its clock if this thread was late
        for _ in range(64):
            try:
                block = next(self._blocks)
            except StopIteration:
                if self.spec.loop and self._samples:
                    self._file.close()
                    try:
                        self._reopen()
                    except AudioError as exc:
                        self.fail(str(exc), now)
                        return
                    continue
                self._messages.report()
                self.done = True
                self._next = None
                if self._samples == 0:
                    self.inbox.end(self.key, f"{self.spec.target}: no audio samples")
                else:
                    self.inbox.end(self.key)
                self.close()
                return
            except AudioError as exc:
                self.done = True
                self._next = None
                self.inbox.end(self.key, str(exc))
                self.close()
                return
            self._samples += block.size
            ahead = self._samples / self.rate
            stamp = self._wall0 + ahead if self.spec.realtime else time.time()
            self.inbox.put(self.key, block, self.rate, stamp, self.epoch)
            if not self.spec.realtime:
                self._next = now
                return
            self._next = self._t0 + (self._samples + self._frames) / self.rate
            if self._next > time.monotonic():
                return

    def close(self, sel: selectors.BaseSelector | None = None) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
        self._messages.report()


class _UrlFeed(_Feed):
    def __init__(self, key: int, spec: SourceSpec, inbox: Inbox) -> None:
        super().__init__(key, spec, inbox)
        self.stream: UrlStream | None = None
        self._sel: selectors.BaseSelector | None = None
        self.rate = FFMPEG_RATE

    def open(self, sel: selectors.BaseSelector, now: float) -> None:
        self.retry_at = None
        self._sel = sel
        try:
            self.stream = UrlStream(str(self.spec.target))
        except (StreammoodError, OSError) as exc:
            self.done = True
            self.inbox.end(self.key, str(exc))
            return
        sel.register(self.stream.fileno(), selectors.EVENT_READ, (self, "audio"))
        sel.register(self.stream.errno(), selectors.EVENT_READ, (self, "errors"))

    def work(self, sel: selectors.BaseSelector, now: float) -> None:
        if self.retry_at is not None and now >= self.retry_at:
            self.open(sel, now)

    def readable(self, what: str, sel: selectors.BaseSelector, now: float) -> None:
        stream = self.stream
        if stream is None:
            return
        if what == "errors":
            stream.drain_errors()
            return
        y = stream.read()
        if y is None:
            self._unregister(sel)
            lasted = stream.samples / stream.rate
            if lasted >= STABLE_S:
                self.backoff = BACKOFF_START_S
                self.failures = 0
            reason = stream.reason() if stream.samples else f"cannot connect: {stream.reason()}"
            self.fail(f"{self.spec.target}: {reason} after {lasted:.1f} s of audio", now)
            return
        if y.size:
            if self.epoch and stream.samples == y.size:  # audio again after a failure
                self.reconnects += 1
            self.inbox.put(self.key, y, stream.rate, time.time(), self.epoch)

    def _unregister(self, sel: selectors.BaseSelector | None) -> None:
        if self.stream is not None and sel is not None:
            for fd in (self.stream.fileno(), self.stream.errno()):
                with contextlib.suppress(KeyError, ValueError, OSError):
                    sel.unregister(fd)

    def close(self, sel: selectors.BaseSelector | None = None) -> None:
        if self.stream is not None:
            self._unregister(sel or self._sel)
            self.stream.close()
            self.stream = None


class _DeviceFeed(_Feed):
    CHECK_S = 1.0

    def __init__(self, key: int, spec: SourceSpec, inbox: Inbox) -> None:
        super().__init__(key, spec, inbox)
        self.source: Any = None
        self._check: float | None = None
        self._lost = (0, 0)  # overflows, underflows of the device streams closed so far

    def due(self) -> float | None:
        return self.retry_at if self.retry_at is not None else self._check

    def audio_lost(self) -> tuple[int, int]:
        src = self.source  # read on any thread: a stream closed meanwhile counts in _lost
        now = (0, 0) if src is None else (src.stats.overflows, src.stats.underflows)
        return self._lost[0] + now[0], self._lost[1] + now[1]

    def open(self, sel: selectors.BaseSelector, now: float) -> None:
        from streammood.audio.sources import DeviceError, DeviceSource

        self.retry_at = None
        epoch, key, inbox = self.epoch, self.key, self.inbox
        try:
            src = DeviceSource(self.spec.target, samplerate=self.spec.samplerate)
            rate = src.sample_rate
            src.on_block = lambda block, t: inbox.put(key, block, rate, t, epoch)
            src.start()
        except DeviceError as exc:
            self.fail(str(exc), now)
            return
        if epoch:
            self.reconnects += 1
        self.source = src
        self._check = now + self.CHECK_S

    def work(self, sel: selectors.BaseSelector, now: float) -> None:
        if self.retry_at is not None:
            if now >= self.retry_at:
                self.open(sel, now)
            return
        self._check = now + self.CHECK_S
        if self.source is not None and not self.source.active:
            self.fail(f"input device {self.spec.target}: capture stopped", now)

    def close(self, sel: selectors.BaseSelector | None = None) -> None:
        if self.source is not None:
            src, self.source = self.source, None
            src.close()
            st = src.stats
            self._lost = (self._lost[0] + st.overflows, self._lost[1] + st.underflows)
        self._check = None


_FEEDS = {"file": _FileFeed, "url": _UrlFeed, "device": _DeviceFeed}


class SourceMux:
    """Read every source of ``specs`` into ``inbox`` on one thread (``streammood-io``).

    Parameters
    ----------
    specs : list of SourceSpec
        Source ``i`` puts its audio under key ``i``.
    inbox : Inbox
    stagger_s : float
        Source ``i`` of ``n`` opens ``stagger_s * i / n`` seconds after the start: sources
        started together would have their mel patches (steps 0, 5, then every 10th) due at the same
        moment, and the one embedding thread would answer the last of them late; spread over
        the 5 s between patches, they come one at a time.

    Notes
    -----
    Start with :meth:`start`, stop with :meth:`close` (closes every file, ffmpeg process and
    device stream). :meth:`status` gives each source's failures and reconnects.
    """

    def __init__(self, specs: list[SourceSpec], inbox: Inbox, stagger_s: float = 0.0) -> None:
        self.feeds: list[_Feed] = [_FEEDS[s.kind](i, s, inbox) for i, s in enumerate(specs)]
        self.stagger_s = float(stagger_s)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streammood-io", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        now = time.monotonic()
        for feed in self.feeds:
            feed.retry_at = now + self.stagger_s * feed.key / len(self.feeds)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - kept for the consumer, which re-raises
            self.error = exc
            for feed in self.feeds:
                if not feed.done:
                    feed.inbox.end(feed.key, f"reader failed: {exc!r}")
        finally:
            for feed in self.feeds:
                with contextlib.suppress(Exception):
                    feed.close(self._sel)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for feed in self.feeds:
                d = feed.due()
                if not feed.done and d is not None and d <= now:
                    feed.work(self._sel, now)
            dues = [d for f in self.feeds if not f.done and (d := f.due()) is not None]
            timeout = max(0.0, min(dues) - time.monotonic()) if dues else 1.0
            for key, _ in self._sel.select(min(timeout, 1.0)):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 64)
                    continue
                feed, what = key.data
                feed.readable(what, self._sel, time.monotonic())

    def status(self) -> list[dict[str, Any]]:
        """Per source: ``failures``, ``reconnects``, ``done``, ``last_error``, and the audio a
        device lost (``overflows``, ``underflows``: PortAudio's input flags, summed over every
        stream the source opened; 0 for files and URLs)."""
        out = []
        for f in self.feeds:
            overflows, underflows = f.audio_lost()
            out.append(
                {
                    "failures": f.failures,
                    "reconnects": f.reconnects,
                    "done": f.done,
                    "last_error": f.last_error,
                    "overflows": overflows,
                    "underflows": underflows,
                }
            )
        return out

    def close(self) -> None:
        """Stop the thread and close every source (idempotent)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10.0)
        elif not self._thread.is_alive():
            for feed in self.feeds:
                with contextlib.suppress(Exception):
                    feed.close(self._sel)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(Exception):
            self._sel.close()


def first_sample_time(chunk: Chunk) -> float:
    """Wall clock of a chunk's first sample, Unix s."""
    return chunk.captured_at - (len(chunk.block) - 1) / chunk.rate
