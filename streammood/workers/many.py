"""``listen --sources`` / ``capture --sources``: many live sources tagged by one process.

Threads, whatever the number of sources: ``streammood-io`` reads every source into one inbox
(:class:`~streammood.audio.mux.SourceMux`; PortAudio's callbacks put device blocks there
themselves), ``streammood-sources`` (this module's worker) drives every source's
:class:`~streammood.features.extractor.StreamingExtractor` and :class:`MoodStage` and hands
messages (or feature frames) to **one** publisher, and **one** ``streammood-musicnn`` thread
embeds every source's patches, batched when several are due
(:class:`~streammood.features.service.EmbeddingService`). Each source keeps its own openSMILE
engine, whose ``smile_run`` thread sleeps on a condition until audio is written (SMILEapi offers
no other way to run it). The worker never waits on the embedding: a step whose patch is being
embedded stays pending and is collected when the service wakes the worker.

Per source, audio is pushed in chunks of ~100 ms (:data:`~streammood.audio.mux.CHUNK_SECONDS`):
fewer resampler calls, openSMILE wake-ups and Python work than 20 ms blocks, for at most that
much latency. When a source's audio is not continuous (a URL reconnected, a device reopened,
the worker fell behind and old audio was dropped) its features start afresh, its stream time
jumps by the gap (``seq`` and ``t_start`` keep following the wall clock from the source's
start), the gap is counted and its rolling window starts over.

Given a Redis ``client``, every source is produced under its own **producer session**
(:mod:`streammood.bus.sessions`), as one ``listen``/``capture`` would: opened before audio
flows (a source held by another live session is refused and reported, unless ``takeover``; the
other sources go on), its lease renewed by the calling thread between writes, its messages or
frames stamped with the session id and continuing the source's ``seq`` and stream time from
where its last session left off (so a killed process restarted loses no step number and
repeats none). A source taken over by another producer is fenced and stops alone. Sessions are
closed (leases given back) once the publisher has delivered what it holds. Each source also has
its own metrics hash, ``{prefix}:metrics:{id}`` (``capture-{id}`` in capture mode), updated about
once a second.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import redis

from streammood.audio.decode import to_mono
from streammood.audio.mux import (
    CHUNK_SECONDS,
    Chunk,
    Inbox,
    SourceMux,
    SourceSpec,
    first_sample_time,
)
from streammood.bus.connection import RedisUnavailableError
from streammood.bus.frames import FramePublisher, encode_inputs
from streammood.bus.keys import DEFAULT_PREFIX, validate_source
from streammood.bus.moods import MoodPublisher
from streammood.bus.schema import MoodMessage
from streammood.bus.sessions import (
    ProducerBusyError,
    ProducerSession,
    close_session,
    open_session,
    renew_session,
)
from streammood.errors import StreammoodError
from streammood.features.extractor import ModelInputs, StreamingExtractor
from streammood.features.service import EmbeddingService
from streammood.features.smile import StreamingSmile
from streammood.layout import EMBED_EVERY, STEP_SECONDS
from streammood.runtime.artifact import ModelArtifact
from streammood.runtime.rolling import StepModel
from streammood.workers.tagging import MoodStage, change_detector

log = logging.getLogger(__name__)

__all__ = ["LaneStats", "ManyStats", "run_many"]

MAX_ERRORS = 5
"""Feature or model failures in a row after which a source is dropped."""

RENEW_S = 1.0
"""Seconds between renewals of the producer leases (they last 3 s)."""


@dataclass
class LaneStats:
    """What happened to one source.

    Attributes
    ----------
    steps : int
        Steps published (messages, or frames in capture mode).
    gaps : int
        Discontinuities (reconnects, reopened devices, audio dropped because the worker fell
        behind); each starts the source's features and window afresh.
    gap_steps : int
        Steps of stream time lost in those gaps.
    dropped_s : float
        Audio dropped because the worker fell behind, s.
    rejected : int
        Steps whose model output was not a valid prediction (never published).
    errors : int
        Feature or model failures (the source restarted after each).
    reconnects : int
        Times the source was reopened after a failure.
    overflows, underflows : int
        PortAudio input overflows / underflows of a device source (audio the device or driver
        lost), over every stream it opened; 0 for files and URLs.
    state : str
        ``running``, ``ended``, ``failed: ...``, ``dropped: ...``, ``refused: ...`` (another
        producer session held the source) or ``fenced: ...`` (another one took it over).
    session : str or None
        Id of the source's producer session (``None``: run without sessions, or refused).
    """

    steps: int = 0
    gaps: int = 0
    gap_steps: int = 0
    dropped_s: float = 0.0
    rejected: int = 0
    errors: int = 0
    reconnects: int = 0
    overflows: int = 0
    underflows: int = 0
    state: str = "starting"
    session: str | None = None

    def as_metrics(self) -> dict[str, int | float | str]:
        """The fields of the source's metrics hash."""
        return {
            "steps": self.steps,
            "rejected_steps": self.rejected,
            "gaps": self.gaps,
            "gap_steps": self.gap_steps,
            "audio_dropped_s": round(self.dropped_s, 3),
            "errors": self.errors,
            "reconnects": self.reconnects,
            "audio_overflows": self.overflows,
            "audio_underflows": self.underflows,
            "state": self.state,
            "session": self.session or "",
        }


@dataclass
class ManyStats:
    """A ``--sources`` run: per source (by id) and the embedding service's batching."""

    sources: dict[str, LaneStats] = field(default_factory=dict)
    patches: int = 0
    embed_calls: int = 0
    largest_batch: int = 0

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.sources.values())


class _Lane:
    """One source inside the worker."""

    def __init__(
        self,
        key: int,
        spec: SourceSpec,
        sid: str,
        run: _Run,
        session: ProducerSession | None = None,
    ) -> None:
        self.key = key
        self.spec = spec
        self.sid = sid
        self.run = run
        self.session = session
        self.stats = LaneStats(session=None if session is None else session.session)
        self.mood = MoodStage(run.artifact, sid, run.step_model) if run.moods_mode else None
        if self.mood is not None and session is not None:
            self.mood.start_session(session.session, session.seq0, session.t0)
        self.metrics_name = sid if run.moods_mode else f"capture-{sid}"[:64].rstrip("-._")
        self.ex: StreamingExtractor | None = None
        self.epoch = -1
        self.offset = 0
        self.next_seq = 0
        self.t0: float | None = None
        self.last_at: float | None = None  # wall clock of the last sample fed
        self.rate = 0
        self.pending: list[np.ndarray] = []
        self.pending_n = 0
        self.pending_at = 0.0
        self.pending_since = 0.0
        self.errors_in_row = 0
        self.done = False
        # openSMILE's set-up (~0.1-0.2 s CPU) done before audio flows, not in the worker while
        # every source's first audio waits (at 64 sources that was ~10 s of backlog)
        self.spare: StreamingSmile | None = self._smile()

    def _smile(self) -> StreamingSmile:
        key, inbox = self.key, self.run.inbox
        return StreamingSmile(catch_up=0.0, on_step=lambda: inbox.wake(key))

    # -- audio in -------------------------------------------------------------------------------
    def feed(self, chunks: list[Chunk], gap: bool) -> None:
        for chunk in chunks:
            if self.done:
                return
            if chunk.epoch != self.epoch or chunk.rate != self.rate or gap or self.ex is None:
                self.restart(chunk)
                gap = False
            block = chunk.block
            if block.dtype == np.int16:
                block = block.astype(np.float32) * np.float32(1 / 32768)
            if block.ndim != 1:
                block = to_mono(block)
            if not self.pending:
                self.pending_since = time.monotonic()
            self.pending.append(block)
            self.pending_n += block.size
            self.pending_at = self.last_at = chunk.captured_at
            if self.pending_n >= self.rate * CHUNK_SECONDS:
                self.flush()

    def flush(self) -> None:
        """Push the audio waiting (a chunk's worth, or older than a chunk)."""
        if not self.pending or self.ex is None:
            return
        y = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        self.pending, self.pending_n = [], 0
        self._guard(lambda: self.ex.push(y, captured_at=self.pending_at))

    def poll(self) -> None:
        if self.ex is not None:
            self._guard(self.ex.poll)

    def restart(self, chunk: Chunk) -> None:
        """A new stretch of continuous audio: flush and finish the old one, start fresh
        features, and let stream time jump by the gap: the wall-clock time between the old
        stretch's last sample and the new one's first (so a burst of buffered audio that a
        server sends on connecting does not hide a later gap)."""
        self.flush()
        ended = self.next_seq * STEP_SECONDS  # stream time the old stretch reached
        if self.ex is not None:
            ended = self.offset * STEP_SECONDS + self.ex.samples_in / self.ex.input_rate
        self._close_extractor(finish=True)
        if self.done:
            return
        start = first_sample_time(chunk)
        if self.t0 is None:
            self.t0 = start
            self.offset = 0
        else:
            gap = max(0.0, start - self.last_at) if self.last_at is not None else 0.0
            at = math.ceil((ended + gap) / STEP_SECONDS - 1e-6)
            self.offset = max(self.next_seq, at)
            self.stats.gaps += 1
            self.stats.gap_steps += self.offset - self.next_seq
            log.info(
                "source %s: gap of %d steps; stream time goes on at %.1f s",
                self.sid,
                self.offset - self.next_seq,
                self.offset * STEP_SECONDS,
            )
            if self.mood is not None:
                self.mood.reset()
        self.epoch, self.rate = chunk.epoch, chunk.rate
        key, inbox = self.key, self.run.inbox
        smile, self.spare = self.spare or self._smile(), None
        self.ex = StreamingExtractor(
            chunk.rate,
            service=self.run.service,
            detector=change_detector(self.run.artifact),
            wait=False,
            on_ready=lambda: inbox.wake(key),
            smile=smile,
        )

    def end(self, error: str | None) -> None:
        """The source ended (or failed for good): publish what is complete, release all."""
        self.flush()
        self._close_extractor(finish=error is None)
        if self.spare is not None:
            self.spare.close()
            self.spare = None
        self.done = True
        self.stats.state = "ended" if error is None else f"failed: {error}"

    def fence(self) -> None:
        """Another producer session took the source over: stop it alone (what is not yet
        written would be refused)."""
        self.close()
        self.stats.state = "fenced: another producer session took the source over"
        log.warning(
            "source %s: another producer session took it over; it stops (the others go on)",
            self.sid,
        )

    def close(self) -> None:
        self._close_extractor(finish=False)
        if self.spare is not None:
            self.spare.close()
            self.spare = None
        self.done = True

    def _close_extractor(self, finish: bool) -> None:
        ex, self.ex = self.ex, None
        if ex is None:
            return
        if finish:
            try:
                self._emit(ex.finish())
            except Exception as exc:  # noqa: BLE001 - this source only
                log.warning("source %s: last steps lost: %s", self.sid, exc)
        ex.close()

    def _guard(self, call: Callable[[], list[ModelInputs]]) -> None:
        try:
            out = call()
        except Exception as exc:  # noqa: BLE001 - one source's failure stops only that source
            self.stats.errors += 1
            self.errors_in_row += 1
            log.warning("source %s: features failed (%s); restarting it", self.sid, exc)
            self._close_extractor(finish=False)
            if self.errors_in_row >= MAX_ERRORS:
                self.done = True
                self.stats.state = f"dropped: {exc}"
                log.warning("source %s: dropped after %d failures", self.sid, MAX_ERRORS)
            return
        self.errors_in_row = 0
        self._emit(out)

    # -- steps out ------------------------------------------------------------------------------
    def _emit(self, out: list[ModelInputs]) -> None:
        for inputs in out:
            if self.offset:
                seq = inputs.seq + self.offset
                inputs = replace(
                    inputs, seq=seq, t_start=seq * STEP_SECONDS, t_end=(seq + 1) * STEP_SECONDS
                )
            self.next_seq = inputs.seq + 1
            if self.run.max_steps is not None and self.stats.steps >= self.run.max_steps:
                continue
            self.run.publish(self, inputs)


class _Run:
    """The worker's shared parts."""

    def __init__(
        self,
        artifact: ModelArtifact,
        inbox: Inbox,
        service: EmbeddingService,
        moods: MoodPublisher | None,
        frames: FramePublisher | None,
        max_steps: int | None,
        on_message: Callable[[MoodMessage, LaneStats], None] | None,
    ) -> None:
        self.artifact = artifact
        self.inbox = inbox
        self.service = service
        self.moods = moods
        self.frames = frames
        self.moods_mode = frames is None
        self.step_model = StepModel(artifact) if self.moods_mode else None
        self.max_steps = max_steps
        self.on_message = on_message
        self.embedder_id = artifact.embedder_id

    def publish(self, lane: _Lane, inputs: ModelInputs) -> None:
        if self.frames is not None:
            session = lane.session
            if session is None:
                self.frames.publish(encode_inputs(lane.sid, inputs, self.embedder_id), lane.sid)
            else:  # the session's stream goes on from where the last one ended
                inputs = replace(
                    inputs,
                    seq=inputs.seq + session.seq0,
                    t_start=inputs.t_start + session.t0,
                    t_end=inputs.t_end + session.t0,
                )
                frame = encode_inputs(lane.sid, inputs, self.embedder_id, session.session)
                self.frames.publish(frame, lane.sid, seq=inputs.seq, t_end=inputs.t_end)
            lane.stats.steps += 1
            return
        try:
            (msg,) = lane.mood.push(inputs)
        except StreammoodError as exc:  # an invalid model output: this step only
            lane.stats.rejected += 1
            if lane.stats.rejected == 1:
                log.warning("source %s step %d not published: %s", lane.sid, inputs.seq, exc)
            return
        if self.moods is not None:
            self.moods.publish(msg)
        lane.stats.steps += 1
        if self.on_message is not None:
            self.on_message(msg, lane.stats)


def run_many(
    specs: list[SourceSpec],
    artifact: ModelArtifact,
    *,
    moods: MoodPublisher | None = None,
    frames: FramePublisher | None = None,
    duration: float | None = None,
    stop: threading.Event | None = None,
    on_message: Callable[[MoodMessage, LaneStats], None] | None = None,
    max_backlog_s: float = 8.0,
    max_batch: int = 16,
    embed_threads: int | None = None,
    client: redis.Redis | None = None,
    prefix: str = DEFAULT_PREFIX,
    takeover: bool = False,
    report: Callable[[str], None] | None = None,
) -> ManyStats:
    """Tag (or, with ``frames``, capture) every source of ``specs`` until all have ended,
    ``duration`` seconds of audio per source have been published, ``stop`` is set, or Ctrl-C.
    Everything started here is stopped on the way out, however the run ends.

    Parameters
    ----------
    specs : list of SourceSpec
        The sources (:func:`~streammood.audio.mux.load_sources`); ids must be valid source ids.
    artifact : ModelArtifact
        Model (and embedder) of every source.
    moods : MoodPublisher, optional
        Where messages go (listen mode).
    frames : FramePublisher, optional
        Capture mode: feature frames go here instead (no model run).
    duration : float, optional
        Seconds of audio to publish per source.
    stop : threading.Event, optional
        Set it to end the run from another thread.
    on_message : callable, optional
        Called with every message and its source's stats (listen mode).
    max_backlog_s : float
        Audio a source may have waiting for the worker before the oldest is dropped (a gap).
    max_batch : int
        Most patches per embedding call.
    embed_threads : int, optional
        Embedding interpreters (one thread each); default 1, 2 from 8 sources on.
    client : redis.Redis, optional
        Produce every source under a producer session opened (and closed) with this client
        (with a publisher only); without it, a capture starts each frame stream afresh and
        messages carry no session.
    prefix : str
        Key prefix of the sessions.
    takeover : bool
        Take sources held by another live session over instead of refusing them.
    report : callable, optional
        Called with one line per source: its session, or why it was refused.

    Returns
    -------
    ManyStats

    Raises
    ------
    ProducerBusyError
        Every source is held by another live producer session (and not ``takeover``).
    RedisUnavailableError
        Redis failed while the sessions were opened.
    """
    if not specs:
        raise StreammoodError("no sources")
    sids = [validate_source(s.id) for s in specs]
    publisher = moods or frames
    if client is not None and publisher is None:
        raise ValueError("producer sessions need a publisher")
    stop = stop or threading.Event()
    max_steps = None if duration is None else max(0, int(round(duration / STEP_SECONDS)))
    stats = ManyStats()
    errors: list[BaseException] = []
    say = report or log.info
    _warm_tables()
    n_embed = embed_threads or (2 if len(specs) >= 8 else 1)
    service = EmbeddingService([artifact.embedder() for _ in range(n_embed)], max_batch=max_batch)
    mux: SourceMux | None = None
    lanes: list[_Lane] = []
    sessions: dict[str, ProducerSession] = {}
    try:
        refused: dict[str, str] = {}
        if client is not None:
            sessions, refused = _open_sessions(client, prefix, sids, takeover, say)
        chosen = [(spec, sid) for spec, sid in zip(specs, sids, strict=True) if sid not in refused]
        if not chosen:
            raise ProducerBusyError(
                next(iter(refused.values()))
                if len(refused) == 1
                else f"every source ({', '.join(refused)}) is already being produced by another "
                "session: stop those producers, or pass --takeover to take them over"
            )
        inbox = Inbox(len(chosen), max_backlog_s)
        run = _Run(artifact, inbox, service, moods, frames, max_steps, on_message)
        for i, (spec, sid) in enumerate(chosen):  # one by one: closed below if one fails
            lanes.append(_Lane(i, spec, sid, run, sessions.get(sid)))
        by_id = {lane.sid: lane for lane in lanes}
        for sid in sids:
            if sid in refused:
                stats.sources[sid] = LaneStats(state=f"refused: {refused[sid]}")
                continue
            stats.sources[sid] = by_id[sid].stats
            if sid in sessions:
                publisher.bind(sessions[sid])
            elif frames is not None:
                frames.begin(sid)
        # patches of sources started together would all be due at once: spread them
        mux = SourceMux([spec for spec, _ in chosen], inbox, stagger_s=EMBED_EVERY * STEP_SECONDS)
        done = threading.Event()
        worker = threading.Thread(
            target=_work,
            args=(lanes, inbox, mux, stop, max_steps, publisher, errors, done),
            name="streammood-sources",
            daemon=True,
        )
        mux.start()
        worker.start()
        # wait on an Event, not Thread.join: a Ctrl-C inside join() can leave CPython 3.11
        # believing the thread stopped while it runs on (bpo-45274's fix releases its lock);
        # meanwhile keep the leases of sources that are starting or reconnecting
        try:
            while not done.wait(RENEW_S if sessions else 0.2):
                if sessions:
                    _renew(client, prefix, lanes, publisher)
        except KeyboardInterrupt:
            stop.set()
            done.wait()
        worker.join()
    finally:
        stop.set()
        if mux is not None:
            mux.close()
            _take_status(lanes, mux)
        for lane in lanes:
            lane.close()
        service.close()
        stats.patches = service.stats.patches
        stats.embed_calls = service.stats.calls
        stats.largest_batch = service.stats.largest_batch
        if sessions:  # the leases go back once what the sessions wrote is in Redis
            if publisher is not None:
                publisher.flush(10.0)
            for session in sessions.values():
                close_session(client, prefix, session)
    if errors:
        raise errors[0]
    return stats


def _open_sessions(
    client: redis.Redis, prefix: str, sids: list[str], takeover: bool, say: Callable[[str], None]
) -> tuple[dict[str, ProducerSession], dict[str, str]]:
    """Open a producer session per source: ``(sessions, refused)``, refused ones with the
    reason; on a Redis failure the opened ones are closed again."""
    sessions: dict[str, ProducerSession] = {}
    refused: dict[str, str] = {}
    try:
        for sid in sids:
            try:
                sessions[sid] = open_session(client, prefix, sid, takeover=takeover)
            except ProducerBusyError as exc:
                refused[sid] = str(exc)
                say(f"refused: {exc}")
                continue
            say(sessions[sid].describe())
    except redis.exceptions.RedisError as exc:
        for session in sessions.values():
            close_session(client, prefix, session)
        raise RedisUnavailableError(
            f"Redis failed to open the producer session of '{sid}' ({type(exc).__name__})"
        ) from None
    return sessions, refused


def _renew(
    client: redis.Redis, prefix: str, lanes: list[_Lane], publisher: MoodPublisher | FramePublisher
) -> None:
    """Renew the producer lease of every running source; one another session holds is marked
    fenced (the worker stops it). Stops at the first source Redis does not answer for."""
    for lane in lanes:
        if lane.session is None or lane.done or lane.sid in publisher.fenced:
            continue
        held = renew_session(client, prefix, lane.session)
        if held is None:
            return
        if not held:
            publisher.fenced.add(lane.sid)


def _warm_tables() -> None:
    """Load librosa's tables (~2 s the first time) before audio flows, not in the worker."""
    from streammood.features.mel import log_mel_frames
    from streammood.features.mfcc import mfcc_block
    from streammood.layout import MFCC_HISTORY, MFCC_STEP_SAMPLES

    mfcc_block(np.zeros(MFCC_HISTORY, np.float32), np.zeros(MFCC_STEP_SAMPLES, np.float32))
    log_mel_frames(np.zeros(1024, np.float32))


def _work(
    lanes: list[_Lane],
    inbox: Inbox,
    mux: SourceMux,
    stop: threading.Event,
    max_steps: int | None,
    publisher: Any,
    errors: list[BaseException],
    done: threading.Event,
) -> None:
    """The worker: audio in, features, moods (or frames) out, for every source; sets ``done``
    when it has closed them all."""
    next_metrics = 0.0
    # with a duration, sources that never deliver (a URL down) do not hold the run up for ever
    deadline = None if max_steps is None else time.monotonic() + max_steps * STEP_SECONDS + 10
    try:
        while not stop.is_set():
            taken = inbox.take(0.05)
            for key, (chunks, gap) in taken.audio.items():
                lanes[key].feed(chunks, gap)
            for key in taken.woken:
                lanes[key].poll()
            for key, error in taken.ended.items():
                lanes[key].end(error)
            now = time.monotonic()
            for lane in lanes:
                if lane.pending and now - lane.pending_since >= CHUNK_SECONDS:
                    lane.flush()
                if lane.stats.state == "starting" and lane.ex is not None:
                    lane.stats.state = "running"
                lane.stats.dropped_s = inbox.dropped_seconds[lane.key]
            if mux.error is not None:
                raise mux.error
            fenced = () if publisher is None else publisher.fenced
            for lane in lanes:
                if lane.sid in fenced and not lane.done:
                    lane.fence()
            if all(
                lane.done or (max_steps is not None and lane.stats.steps >= max_steps)
                for lane in lanes
            ):
                break
            if deadline is not None and now > deadline:
                log.warning("duration reached; sources still short of it are stopped")
                break
            if publisher is not None and now >= next_metrics:
                next_metrics = now + 1.0
                _take_status(lanes, mux)
                _update_metrics(publisher, lanes)
    except BaseException as exc:  # noqa: BLE001 - re-raised by run_many
        errors.append(exc)
    finally:
        try:
            for lane in lanes:
                lane.close()
            if publisher is not None:
                _update_metrics(publisher, lanes)
        finally:
            done.set()


def _update_metrics(publisher: MoodPublisher | FramePublisher, lanes: list[_Lane]) -> None:
    """The run's metrics hash and every source's own (not a fenced one's: the hash is the new
    producer's now)."""
    publisher.update_metrics(**_metrics(lanes))
    for lane in lanes:
        if lane.sid not in publisher.fenced:
            publisher.update_source_metrics(lane.sid, lane.metrics_name, **lane.stats.as_metrics())


def _take_status(lanes: list[_Lane], mux: SourceMux) -> None:
    """Copy the I/O thread's per-source counters (reconnects, device audio lost) to the lanes."""
    for lane, st in zip(lanes, mux.status(), strict=True):
        lane.stats.reconnects = st["reconnects"]
        lane.stats.overflows, lane.stats.underflows = st["overflows"], st["underflows"]


def _metrics(lanes: list[_Lane]) -> dict[str, int | float | str]:
    out: dict[str, int | float | str] = {
        "sources": len(lanes),
        "sources_running": sum(not lane.done for lane in lanes),
        "steps": sum(lane.stats.steps for lane in lanes),
        "gaps": sum(lane.stats.gaps for lane in lanes),
    }
    for lane in lanes:
        s = lane.stats
        out[f"{lane.sid}.steps"] = s.steps
        out[f"{lane.sid}.gaps"] = s.gaps
        out[f"{lane.sid}.gap_steps"] = s.gap_steps
        out[f"{lane.sid}.dropped_s"] = round(s.dropped_s, 3)
        out[f"{lane.sid}.state"] = s.state
    return out
