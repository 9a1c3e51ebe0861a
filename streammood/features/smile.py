"""openSMILE ComParE_2016 LLDs and deltas, streamed through the SMILEapi, aggregated per step.

One openSMILE configuration (``smile/compare_lld.conf``: the package's own
``compare/ComParE_2016_core.lld.conf.inc`` plus the two ``cVectorConcat`` blocks of
``ComParE_2016.conf``) computes the 65 low-level descriptors and their 65 deltas at 16 kHz with a
10 ms hop. Audio goes in through a ``cExternalAudioSource`` (16-bit), frames come out through one
``cExternalSink`` per level. Per 500 ms step the mean and standard deviation of each descriptor
over the frames whose start time falls in the step give 260 values, in the layout of DEAM's
per-song feature files (``<lld>_stddev``, ``<lld>_amean`` for the 65 LLDs, then the same for the
65 deltas).

:class:`StreamingSmile` runs ``smile_run`` in a background thread and is fed audio in small
blocks (ring buffers: memory stays flat); :func:`lld_offline` runs the same configuration over a
whole signal at once. Both give frames bit-identical to ``opensmile.Smile.process_signal`` on the
whole signal, so their statistics are equal.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from streammood.layout import N_LLD, N_LLD_STATS, SMILE_STEP_SAMPLES

__all__ = ["StreamingSmile", "lld_offline", "lld_names", "to_pcm16", "frame_names"]

_CONF_DIR = Path(__file__).with_name("smile")
_CONFIG = _CONF_DIR / "compare_lld.conf"
_SOURCE = b"extsource"
_SINKS = (b"lldsink", b"lldesink")
_TAILS = (b"lldtail", b"lldetail")
_ROW = 4 * N_LLD
"""Bytes of one frame (65 float32 values)."""

FRAMES_PER_STEP = 50
"""openSMILE frames (10 ms hop) whose start time falls in one 500 ms step."""
FRAME_SECONDS = 0.01
WRITE_BLOCK = 1_600
"""Largest block written to openSMILE at once, samples (100 ms)."""
SETTLE_SAMPLES = 2_400
"""Audio past a step's end after which its statistics are expected to be final, samples (150 ms).

openSMILE emits a frame 7-14 frames after the audio that ends it (pitch smoothing and the delta
window look ahead; 8 and 10 frames measured here); a step is complete once the first frame of the
next step has come out of both levels. :meth:`StreamingSmile.push` waits at most
:data:`CATCH_UP_SECONDS` for openSMILE's thread to get there, then returns what is complete:
a late step comes with a later push, never blocks the stream."""
CATCH_UP_SECONDS = 0.05
"""Longest wait in :meth:`StreamingSmile.push` for openSMILE's thread to catch up, seconds."""

_SMILE_SUCCESS = 0
_SMILE_NOT_WRITTEN = 8


@cache
def _lib():
    """``opensmile.core.lib``: the SMILEapi shared library of the ``opensmile`` wheel with its
    ctypes signatures (shared with the package: never change them).

    The package's own module when it is imported already; otherwise that one file (ctypes and
    NumPy only) is loaded by itself: importing the package runs ``opensmile/__init__``, which
    imports pandas and audobject (0.4-0.8 s of a cold process's CPU) that streammood never uses.
    """
    if (lib := sys.modules.get("opensmile.core.lib")) is not None:
        return lib
    path = _package_root() / "core" / "lib.py"
    lib_spec = importlib.util.spec_from_file_location("streammood_smileapi", path)
    assert lib_spec is not None and lib_spec.loader is not None
    lib = importlib.util.module_from_spec(lib_spec)
    lib_spec.loader.exec_module(lib)
    return lib


@cache
def _package_root() -> Path:
    """The ``opensmile`` package's folder, found without importing the package."""
    spec = importlib.util.find_spec("opensmile")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - a broken wheel
        import opensmile

        return Path(opensmile.__file__).resolve().parent
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def load_library() -> None:
    """Load openSMILE's native library now (idempotent).

    Call it before TensorFlow is imported into the process: once TensorFlow's shared libraries
    are loaded first, SMILEapi resolves some of its symbols to theirs and crashes the process
    (segmentation fault) on its first run. The modules that import TensorFlow call this first.
    """
    _lib()


def _options(stream: bool) -> dict[str, str]:
    root = _package_root() / "core" / "config"
    return {
        "compareLldConf": str(root / "compare" / "ComParE_2016_core.lld.conf.inc"),
        "bufferModeRbConf": str(root / "shared" / "BufferModeRb.conf.inc"),
        "bufferModeRbLagConf": str(root / "shared" / "BufferModeRbLag.conf.inc"),
        "bufferModeConf": str(_CONF_DIR / "ring_buffer.conf"),
        "waveBufferConf": str(_CONF_DIR / ("wave_ring.conf" if stream else "wave_whole.conf")),
        # streaming: one callback per level and step (its 50 frames), not one per frame
        "sinkBlock": str(FRAMES_PER_STEP if stream else 1),
    }


def to_pcm16(y: np.ndarray) -> np.ndarray:
    """Float audio to 16-bit PCM the way the ``opensmile`` package does (``x * 32768``,
    truncated), but clipped first: decoded MP3s peak above 1.0 and the package's plain cast
    wraps around.

    Parameters
    ----------
    y : np.ndarray
        ``(samples,)`` float audio, nominally in [-1, 1].

    Returns
    -------
    np.ndarray
        ``(samples,)`` int16.
    """
    return np.clip(np.asarray(y, dtype=np.float32) * 32768.0, -32768.0, 32767.0).astype(np.int16)


_live = 0
_live_lock = threading.Lock()


def live_engines() -> int:
    """openSMILE engines allocated in this process and not freed yet (a leak check)."""
    return _live


class _Engine:
    """One SMILEapi instance of ``compare_lld.conf`` with frame callbacks on both sinks.

    Streaming (``stream=True``) the sinks give a step's 50 frames in one callback (and need no
    look at the next step's first frame to know the step is complete); the frame-by-frame tail
    sinks are switched on with :meth:`enable_tail` just before end of input, because openSMILE's
    last frames come out after a block sink has given its final partial block."""

    def __init__(self, stream: bool, on_frame) -> None:
        global _live
        lib = _lib()
        api = lib.smileapi
        self._api = api
        self._obj = api.smile_new()
        if not self._obj:
            raise RuntimeError("openSMILE: smile_new failed")
        with _live_lock:
            _live += 1
        try:
            opts = _options(stream)
            flat = [str(v).encode() for kv in opts.items() for v in kv]
            argv = (ctypes.c_char_p * (len(flat) + 1))(*flat, None)
            self._check(
                api.smile_initialize(
                    self._obj, str(_CONFIG).encode(), len(opts), argv, 1, 0, 0, None
                )
            )
            # keep the CFUNCTYPE objects referenced for the engine's whole life
            self._callbacks = []
            for level, sink in enumerate(_SINKS):
                cb = lib.ExternalSinkCallbackEx(self._make_callback(level, on_frame))
                self._callbacks.append(cb)
                self._check(api.smile_extsink_set_data_callback_ex(self._obj, sink, cb, None))
        except BaseException:
            self.free()
            raise

    @staticmethod
    def _make_callback(level: int, on_frame):
        string_at = ctypes.string_at

        def callback(data, nt, n, meta, _param) -> int:
            # runs on openSMILE's thread, with the GIL: keep it cheap (raw float32 bytes)
            on_frame(level, meta[0].time, string_at(data, 4 * nt * n))
            return 1

        return callback

    def enable_tail(self, on_frame) -> None:
        """Frame-by-frame callbacks on the tail sinks from now on (call before end of input)."""
        lib = _lib()
        for level, sink in enumerate(_TAILS):
            cb = lib.ExternalSinkCallbackEx(self._make_callback(level, on_frame))
            self._callbacks.append(cb)
            self._check(self._api.smile_extsink_set_data_callback_ex(self._obj, sink, cb, None))

    def names(self, sink: bytes) -> list[str]:
        count = ctypes.c_long()
        self._check(self._api.smile_extsink_get_num_elements(self._obj, sink, ctypes.byref(count)))
        out = []
        for i in range(count.value):
            name = ctypes.c_char_p()
            self._check(
                self._api.smile_extsink_get_element_name(self._obj, sink, i, ctypes.byref(name))
            )
            out.append(name.value.decode())
        return out

    def write(self, pcm: np.ndarray) -> bool:
        """Write int16 samples; False when the input buffer is full (try again later)."""
        res = self._api.smile_extaudiosource_write_data(
            self._obj, _SOURCE, pcm.ctypes.data, pcm.nbytes
        )
        if res == _SMILE_NOT_WRITTEN:
            return False
        self._check(res)
        return True

    def end_of_input(self) -> None:
        self._check(self._api.smile_extaudiosource_set_external_eoi(self._obj, _SOURCE))

    def run(self) -> int:
        """Process until end of input (blocks); returns the SMILEapi status."""
        return self._api.smile_run(self._obj)

    def abort(self) -> None:
        self._api.smile_abort(self._obj)

    def free(self) -> None:
        global _live
        if self._obj:
            self._api.smile_free(self._obj)
            self._obj = None
            with _live_lock:
                _live -= 1

    def error_message(self) -> str:
        msg = self._api.smile_error_msg(self._obj)
        return msg.decode(errors="replace") if msg else ""

    def _check(self, res: int) -> None:
        if res != _SMILE_SUCCESS:
            raise RuntimeError(f"openSMILE failed (code {res}): {self.error_message()}")


class _StepStats:
    """Collect frames per step (by frame start time) and reduce each step to 260 values.

    Frames arrive one by one or in blocks (raw float32 bytes, 65 values per frame, the first
    frame's start time); frame ``i`` starts at ``i * 10 ms`` and belongs to step ``i // 50``."""

    def __init__(self) -> None:
        # per level: step -> [(index of the first frame, raw float32 bytes of 1+ frames)]
        self.frames: tuple[dict[int, list[tuple[int, bytes]]], ...] = ({}, {})
        self.latest = [-1, -1]  # newest frame index seen per level

    def add(self, level: int, t: float, raw: bytes) -> bool:
        """Store frames; True when they complete a step on their level."""
        idx0 = int(round(t / FRAME_SECONDS))
        n = len(raw) // _ROW
        frames = self.frames[level]
        i = 0
        while i < n:
            idx = idx0 + i
            step = idx // FRAMES_PER_STEP
            take = min(n - i, (step + 1) * FRAMES_PER_STEP - idx)
            frames.setdefault(step, []).append((idx, raw[i * _ROW : (i + take) * _ROW]))
            i += take
        last = idx0 + n - 1
        before = (self.latest[level] + 1) // FRAMES_PER_STEP
        if last > self.latest[level]:
            self.latest[level] = last
        return (self.latest[level] + 1) // FRAMES_PER_STEP > before

    def complete_before(self) -> int:
        """Steps ``< k`` are complete: their last frame has left both levels."""
        return min((latest + 1) // FRAMES_PER_STEP for latest in self.latest)

    def replace_from(self, level: int, tail: list[tuple[int, bytes]]) -> None:
        """Take ``tail`` (frames one by one, in order, from the first frame it has on) instead
        of the frames stored for those indices."""
        if not tail:
            return
        first = tail[0][0]
        frames = self.frames[level]
        for step in [k for k in frames if (k + 1) * FRAMES_PER_STEP > first]:
            kept = [
                (idx, raw[: max(0, first - idx) * _ROW]) for idx, raw in frames[step] if idx < first
            ]
            frames[step] = [(idx, raw) for idx, raw in kept if raw]
        for idx, raw in tail:
            frames.setdefault(idx // FRAMES_PER_STEP, []).append((idx, raw))

    def pop(self, step: int) -> np.ndarray:
        """Statistics of one step, ``(260,)`` float32 (NaN where a level had no frame)."""
        out = np.full((2, N_LLD, 2), np.nan)
        for level in (0, 1):
            rows = self.frames[level].pop(step, None)
            if rows:
                raw = b"".join(r for _, r in rows)
                x = np.frombuffer(raw, np.float32).reshape(-1, N_LLD).astype(np.float64)
                out[level, :, 0] = x.std(axis=0)
                out[level, :, 1] = x.mean(axis=0)
        return out.reshape(N_LLD_STATS).astype(np.float32)

    def drop_from(self, step: int) -> None:
        for level in (0, 1):
            for k in [k for k in self.frames[level] if k >= step]:
                del self.frames[level][k]


class StreamingSmile:
    """Streaming openSMILE: push 16 kHz audio, get each step's 260 LLD statistics once final.

    ``smile_run`` runs in a background thread; audio is written in blocks of at most
    :data:`WRITE_BLOCK` samples into a ring buffer, so memory stays flat however long the stream.
    Each instance is an independent openSMILE engine (several can run in one process).

    Parameters
    ----------
    timeout : float
        Longest wait for openSMILE at :meth:`finish` or on a stall, s.
    catch_up : float, optional
        Longest wait in :meth:`push` for a step due to come out, s (default
        :data:`CATCH_UP_SECONDS`; 0: never wait, a late step comes with a later :meth:`push`
        or :meth:`poll`).
    on_step : callable, optional
        Called on openSMILE's thread (no arguments) when a frame of a new step comes out: the
        cue to :meth:`poll`.

    Examples
    --------
    >>> smile = StreamingSmile()
    >>> done = smile.push(y16[:8000])   # [] : step 0 needs 250 ms more audio
    >>> done += smile.push(y16[8000:16000])   # [(0, array of shape (260,))]
    >>> done += smile.finish()   # the rest, up to the last full step
    """

    def __init__(
        self,
        timeout: float = 30.0,
        catch_up: float | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.catch_up = catch_up
        self._on_step = on_step
        self._stats = _StepStats()
        self._cond = threading.Condition()
        self._engine = _Engine(stream=True, on_frame=self._on_frame)
        self._written = 0
        self._next_step = 0
        self._finished = False
        self._status: int | None = None
        self._thread = threading.Thread(target=self._run, name="streammood-smile", daemon=True)
        self._thread.start()

    @property
    def samples_written(self) -> int:
        """Samples written so far (16 kHz)."""
        return self._written

    def _on_frame(self, level: int, t: float, row: bytes) -> None:
        with self._cond:
            new_step = self._stats.add(level, t, row)
            if new_step:
                self._cond.notify_all()
        if new_step and self._on_step is not None:
            self._on_step()

    def _run(self) -> None:
        status = self._engine.run()
        with self._cond:
            self._status = status
            self._cond.notify_all()

    def _wait(self, predicate, patience: float | None = None) -> None:
        """Wait for ``predicate``; after ``patience`` seconds give up quietly, after
        :attr:`timeout` (no ``patience``) raise."""
        limit = self.timeout if patience is None else patience
        deadline = time.monotonic() + limit
        with self._cond:
            while not predicate():
                if self._status is not None and not predicate():
                    raise RuntimeError(
                        f"openSMILE stopped (code {self._status}): {self._engine.error_message()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    if patience is not None:
                        return
                    raise RuntimeError(f"openSMILE produced no frames for {self.timeout} s")
                self._cond.wait(left)

    def push(self, y16: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Feed audio; return the steps that became final.

        Parameters
        ----------
        y16 : np.ndarray
            ``(samples,)`` float mono audio at 16 kHz, any length.

        Returns
        -------
        list of (int, np.ndarray)
            ``(step, stats)`` in step order, ``stats`` of shape ``(260,)`` float32. A step is
            returned once :data:`SETTLE_SAMPLES` of the following audio have been pushed.
        """
        if self._finished:
            raise RuntimeError("StreamingSmile.push after finish()")
        pcm = to_pcm16(y16)
        for i in range(0, len(pcm), WRITE_BLOCK):
            block = np.ascontiguousarray(pcm[i : i + WRITE_BLOCK])
            deadline = time.monotonic() + self.timeout
            while not self._engine.write(block):
                if self._status is not None or time.monotonic() > deadline:
                    raise RuntimeError("openSMILE does not accept audio (input buffer full)")
                time.sleep(0.001)
            self._written += len(block)
        due = max(0, (self._written - SETTLE_SAMPLES) // SMILE_STEP_SAMPLES)
        catch_up = CATCH_UP_SECONDS if self.catch_up is None else self.catch_up
        if due > self._next_step and catch_up > 0:
            self._wait(lambda: self._stats.complete_before() >= due, catch_up)
        return self.poll()

    def poll(self) -> list[tuple[int, np.ndarray]]:
        """The steps that became final since the last call, without writing or waiting."""
        if self._finished:
            return []
        with self._cond:
            ready = min(self._stats.complete_before(), self._written // SMILE_STEP_SAMPLES)
        return self._collect(ready)

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Signal end of input, wait for openSMILE to drain, return the remaining full steps.

        Steps are counted in whole 500 ms: audio after the last full step is dropped.
        """
        if self._finished:
            return []
        self._finished = True
        tail: tuple[list[tuple[int, bytes]], ...] = ([], [])

        def on_tail(level: int, t: float, raw: bytes) -> None:
            tail[level].append((int(round(t / FRAME_SECONDS)), raw))

        self._engine.enable_tail(on_tail)
        self._engine.end_of_input()
        self._thread.join()
        self._engine.free()
        if self._status != _SMILE_SUCCESS:
            raise RuntimeError(f"openSMILE failed (code {self._status})")
        n_steps = self._written // SMILE_STEP_SAMPLES
        with self._cond:
            for level in (0, 1):
                self._stats.replace_from(level, tail[level])
            self._stats.drop_from(n_steps)
        return self._collect(n_steps)

    def close(self) -> None:
        """Stop the engine without collecting (safe to call twice)."""
        if not self._finished:
            self._finished = True
            # smile_abort is ignored until smile_run has really started: end the input too
            # (the run then ends by itself after the little audio buffered) and keep aborting
            with contextlib.suppress(RuntimeError):
                self._engine.end_of_input()
            while self._thread.is_alive():
                self._engine.abort()
                self._thread.join(0.05)
            self._engine.free()

    def __enter__(self) -> StreamingSmile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    def _collect(self, upto: int) -> list[tuple[int, np.ndarray]]:
        out = []
        with self._cond:
            for step in range(self._next_step, upto):
                out.append((step, self._stats.pop(step)))
        self._next_step = max(self._next_step, upto)
        return out


def lld_offline(y16: np.ndarray, n_steps: int) -> np.ndarray:
    """LLD statistics of a whole signal in one openSMILE run.

    Parameters
    ----------
    y16 : np.ndarray
        ``(samples,)`` float mono audio at 16 kHz, all of it written before end of input (as
        :class:`StreamingSmile` fed the same audio and then finished sees it).
    n_steps : int
        Steps to return, at most ``samples // 8000``; statistics of later audio (a trailing
        partial step) are dropped.

    Returns
    -------
    np.ndarray
        ``(n_steps, 260)`` float32, columns named by :func:`lld_names`.
    """
    n_steps = int(n_steps)
    if not 0 <= n_steps <= len(y16) // SMILE_STEP_SAMPLES:
        raise ValueError(f"n_steps={n_steps} outside 0..{len(y16) // SMILE_STEP_SAMPLES}")
    if n_steps == 0:
        return np.zeros((0, N_LLD_STATS), np.float32)
    pcm = np.ascontiguousarray(to_pcm16(y16))
    stats = _StepStats()
    engine = _Engine(stream=False, on_frame=stats.add)
    try:
        if not engine.write(pcm):
            raise RuntimeError("openSMILE refused the signal")
        engine.end_of_input()
        engine._check(engine.run())
    finally:
        engine.free()
    stats.drop_from(n_steps)
    return np.stack([stats.pop(k) for k in range(n_steps)])


@cache
def frame_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """openSMILE's names of the 65 LLDs and the 65 deltas (``F0final_sma``, ``F0final_sma_de``)."""
    engine = _Engine(stream=False, on_frame=lambda *a: None)
    try:
        return tuple(engine.names(_SINKS[0])), tuple(engine.names(_SINKS[1]))
    finally:
        engine.free()


def lld_names() -> list[str]:
    """Names of the 260 statistics, DEAM's layout: ``F0final_sma_stddev``,
    ``F0final_sma_amean``, ... (65 LLDs), then ``F0final_sma_de_stddev``, ... (65 deltas)."""
    lld, de = frame_names()
    return [f"{name}_{stat}" for name in (*lld, *de) for stat in ("stddev", "amean")]
