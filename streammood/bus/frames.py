"""Feature frames on Redis, capture → infer: the model inputs of one step as a frame, the
publisher that appends frames to a source's stream, and the reader that shares the sources among
``infer`` workers.

Scaling out ``infer``
---------------------
A source's steps must be processed in order by the one worker that holds its model state, so
frames are *not* read through a consumer group (which would deal one source's entries out to
several workers). Instead each :class:`FrameReader` claims whole sources with an expiring lease
``{prefix}:lease:{source}`` (``SET NX PX``, renewed while the worker lives) and reads the streams
it owns with ``XREAD``. Workers announce themselves in ``{prefix}:workers``; each claims at most
its fair share ``ceil(sources / workers)`` and releases sources above that share, so adding a
worker rebalances within a few seconds. A worker records the entry id of the last frame it
processed in ``{prefix}:cursor:{source}``. The worker that takes a source over (after a
rebalance or a crash, once the lease expired) resumes after that cursor and first receives the
``warmup`` frames up to it again, flagged ``replay=True``: the model's output at a step depends
only on the last 60 steps, so replaying 59 steps rebuilds the state exactly and the messages it
publishes afterwards equal those the old owner would have published.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import redis

from streammood.bus.codec import FrameError, decode_frame, encode_frame
from streammood.bus.connection import pipeline
from streammood.bus.keys import DEFAULT_PREFIX, Keys, SourceIdError, validate_source
from streammood.bus.outbox import Outbox
from streammood.bus.sessions import FENCE_LUA, ProducerSession
from streammood.features.extractor import ModelInputs
from streammood.layout import MFCC_FRAMES, N_LLD_STATS, N_MFCC

log = logging.getLogger(__name__)

DEFAULT_FRAME_MAXLEN = 1_200
"""Approximate cap of a feature-frame stream (10 minutes of steps)."""
FEATURE_LIMITS = {"mfcc": 1e5, "lld": 1e10, "emb": 1e4}
"""Largest magnitude accepted per array. Real music gives |mfcc| < 1 200 (digital silence
~1 130), |lld| < 4e6 (energy-like descriptors), |emb| < 5; far beyond is a corrupt frame, which
would also push the model's states to infinity."""


# -- model inputs <-> frame -----------------------------------------------------------------
def encode_inputs(
    source: str, inputs: ModelInputs, embedder: str, session: str | None = None
) -> bytes:
    """One feature frame for the bus (``captured_at`` in the header when known, ``session``:
    the producer session's id, when there is one)."""
    header: dict[str, Any] = {
        "source": source,
        "seq": inputs.seq,
        "t_start": inputs.t_start,
        "t_end": inputs.t_end,
        "embedder": embedder,
    }
    if inputs.captured_at is not None:
        header["captured_at"] = inputs.captured_at
    if session is not None:
        header["session"] = session
    return encode_frame(header, {"mfcc": inputs.mfcc, "lld": inputs.lld, "emb": inputs.emb})


def decode_inputs(
    header: dict, arrays: dict[str, np.ndarray], embedder: str, emb_dim: int
) -> ModelInputs:
    """Check a decoded frame against the model and turn it into :class:`ModelInputs`.

    Raises
    ------
    FrameError
        Wrong embedder, missing array, wrong shape, NaN or infinity, or a value beyond
        :data:`FEATURE_LIMITS`.
    """
    if header.get("embedder") != embedder:
        raise FrameError(
            f"frame of {header.get('source')} seq {header.get('seq')} was made with embedder "
            f"{header.get('embedder')!r}, this model uses {embedder!r}"
        )
    expected = {"mfcc": (MFCC_FRAMES, N_MFCC), "lld": (N_LLD_STATS,), "emb": (emb_dim,)}
    for name, shape in expected.items():
        if name not in arrays:
            raise FrameError(f"frame seq {header.get('seq')} lacks array {name!r}")
        if arrays[name].shape != shape:
            raise FrameError(
                f"frame seq {header.get('seq')}: {name} has shape {arrays[name].shape}, not {shape}"
            )
        values = arrays[name]
        if not np.all(np.isfinite(values)):
            raise FrameError(f"frame seq {header.get('seq')}: {name} holds NaN or inf")
        if values.size and float(np.max(np.abs(values))) > FEATURE_LIMITS[name]:
            raise FrameError(
                f"frame seq {header.get('seq')}: {name} holds values beyond "
                f"±{FEATURE_LIMITS[name]:g} (max |x| = {float(np.max(np.abs(values))):.3g})"
            )
    return ModelInputs(
        int(header["seq"]),
        float(header["t_start"]),
        float(header["t_end"]),
        arrays["mfcc"],
        arrays["lld"],
        arrays["emb"],
        captured_at=_captured_at(header),
    )


def _captured_at(header: dict) -> float | None:
    """The producer's ``captured_at`` (Unix s), None when absent or not a finite number."""
    value = header.get("captured_at")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# -- publishing -----------------------------------------------------------------------------
_FRAME_WRITE = (
    FENCE_LUA
    + """
-- KEYS[1] frames stream, KEYS[2] producer lease, KEYS[3] session hash. ARGV: [1] frame,
-- [2] session, [3] lease ms, [4] maxlen, [5] next seq, [6] next stream time, [7] now (s).
if not producer_fence() then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'frame', ARGV[1])
redis.call('HSET', KEYS[3], 'next_seq', ARGV[5], 't_next', ARGV[6], 'updated_at', ARGV[7])
return 1
"""
)


class FramePublisher(Outbox[tuple[str, bytes, int, float]]):
    """Publish encoded feature frames: XADD (field ``frame``) to the capped stream
    ``{prefix}:frames:{source}``.

    Parameters
    ----------
    client_or_url, prefix, buffer, batch, metrics_id, backoff_start, backoff_max
        See :class:`~streammood.bus.outbox.Outbox`.
    maxlen : int
        Approximate cap of each frame stream.

    Notes
    -----
    A source bound to a producer session (:meth:`bind`) is written through the session's fence
    (:mod:`streammood.bus.sessions`): a frame of a session that was taken over is refused,
    counted in :attr:`fenced_frames` and its source added to :attr:`fenced`.
    """

    kind = "frames"
    _RESET = b""

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        prefix: str = DEFAULT_PREFIX,
        *,
        maxlen: int = DEFAULT_FRAME_MAXLEN,
        **kwargs: Any,
    ) -> None:
        self.maxlen = maxlen
        self.sessions: dict[str, ProducerSession] = {}
        self.fenced_frames = 0
        self._slots: list[tuple[int, int]] = []  # (pipeline command index, item index)
        super().__init__(client_or_url, prefix, **kwargs)
        self._frame_write = self._client.register_script(_FRAME_WRITE)

    def bind(self, session: ProducerSession) -> None:
        """Write the frames of ``session.source`` through the session's fence (call before its
        first frame; give :meth:`publish` each frame's ``seq`` and ``t_end``)."""
        self.sessions[session.source] = session

    def begin(self, source: str) -> None:
        """Start ``source`` over: queue the deletion of its old frames and cursor, so that
        ``infer`` workers start from its first new frame (tools and tests; ``capture`` opens a
        producer session instead, which continues the stream)."""
        self._submit((validate_source(source), self._RESET, -1, 0.0))

    def publish(
        self, frame: bytes, source: str, *, seq: int | None = None, t_end: float | None = None
    ) -> None:
        """Queue one frame of ``source`` (made by :func:`encode_inputs` or
        :func:`~streammood.bus.codec.encode_frame`; not decoded here) for the source's stream.
        ``seq`` and ``t_end`` (s) of the frame's step are required for a bound source (they
        become the session's ``next_seq - 1`` and ``t_next``). Returns at once; never raises
        on Redis trouble."""
        if not isinstance(frame, bytes) or not frame:
            raise TypeError("expected the bytes of an encoded frame")
        validate_source(source)
        if source in self.sessions and (seq is None or t_end is None):
            raise TypeError(f"source {source!r} has a producer session: give seq and t_end")
        self._submit((source, frame, -1 if seq is None else int(seq), float(t_end or 0.0)))

    def _weight(self, items: Sequence[tuple[str, bytes, int, float]]) -> int:
        return sum(1 for _, frame, _, _ in items if frame)

    def _write(
        self, pipe: redis.client.Pipeline, items: Sequence[tuple[str, bytes, int, float]]
    ) -> None:
        self._slots = []
        now = f"{time.time():.3f}"
        for i, (source, frame, seq, t_end) in enumerate(items):
            if frame is self._RESET or not frame:
                pipe.delete(self.keys.frames_stream(source))
                pipe.delete(self.keys.cursor(source))
                pipe.hdel(self.keys.dead_letter, source)
                continue
            session = self.sessions.get(source)
            if session is None:
                pipe.xadd(
                    self.keys.frames_stream(source),
                    {"frame": frame},
                    maxlen=self.maxlen,
                    approximate=True,
                )
                continue
            self._slots.append((len(pipe.command_stack), i))
            self._frame_write(
                keys=[
                    self.keys.frames_stream(source),
                    self.keys.producer(source),
                    self.keys.session(source),
                ],
                args=[
                    frame,
                    session.session,
                    session.lease_ms,
                    self.maxlen,
                    seq + 1,
                    repr(t_end),
                    now,
                ],
                client=pipe,
            )
        pipe.sadd(self.keys.frame_sources, *{item[0] for item in items})

    def _written(self, items: Sequence[tuple[str, bytes, int, float]], results: list) -> int:
        refused = 0
        gone: set[int] = set()
        for slot, i in self._slots:
            if not results[slot]:
                refused += 1
                gone.add(i)
                source = items[i][0]
                if source not in self.fenced:
                    log.error(
                        "session %s of source %s was taken over by another producer: its frames "
                        "are refused",
                        self.sessions[source].session,
                        source,
                    )
                self.fenced.add(source)
        self.fenced_frames += refused
        for i, (source, frame, _, _) in enumerate(items):
            if frame and i not in gone:
                self._count_published(source)
        return self._weight(items) - refused


# -- reading --------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


@dataclass(frozen=True)
class Frame:
    """One feature frame read from a source's stream, or an entry that could not be one.

    Attributes
    ----------
    source : str
        Source id.
    seq : int
        Step number (``-1`` for a rejected entry).
    t_start, t_end : float
        Stream time of the step, seconds.
    arrays : dict[str, np.ndarray]
        The float32 feature arrays, by name.
    header : dict
        The full frame header (extra producer fields included).
    entry_id : str
        Redis stream entry id.
    replay : bool
        A warm-up frame that a previous owner of the source already processed: feed it to the
        model state but do not publish its output.
    error : str or None
        Why the entry is not a usable frame (oversized, no ``frame`` field, undecodable, another
        source's frame); ``None`` for a good frame. A rejected entry must be acknowledged like a
        good one, so the cursor passes it.
    """

    source: str
    seq: int
    t_start: float
    t_end: float
    arrays: dict[str, np.ndarray] = field(repr=False)
    header: dict[str, Any] = field(repr=False)
    entry_id: str
    replay: bool = False
    error: str | None = None

    @property
    def session(self) -> str | None:
        """The producer session that wrote the frame (``None`` for producers before sessions)."""
        value = self.header.get("session")
        return value if isinstance(value, str) else None


DEFAULT_LEASE_MS = 1_200
"""Lifetime of a source lease, ms: a dead worker's sources are taken over about this long after
its last renewal (renewals every quarter of it)."""
MAX_ENTRY_BYTES = 1 << 20
"""Largest stream entry a reader downloads, bytes (a real frame is ~5.7 kB); a larger one is
measured in Redis and rejected without being fetched."""
BATCH_BYTES = 4 << 20
"""Most frame bytes fetched per source per read."""

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
_FETCH = """
-- Entries of one stream, one at a time, measured before they are returned: a flat list of
-- (id, kind, payload) with kind 'ok' (payload: the frame), 'big' (payload: its size) or
-- 'missing' (no frame field). KEYS[1]: stream. ARGV: [1] start id (exclusive going forward,
-- inclusive going back), [2] most entries, [3] largest frame returned, [4] byte budget,
-- [5] '1': backwards.
local back = ARGV[5] == '1'
local pos = ARGV[1]
local n, maxb, budget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, total = {}, 0
for i = 1, n do
  local found
  if back then
    local start = pos
    if i > 1 then start = '(' .. pos end
    found = redis.call('XREVRANGE', KEYS[1], start, '-', 'COUNT', 1)
  else
    found = redis.call('XRANGE', KEYS[1], '(' .. pos, '+', 'COUNT', 1)
  end
  local e = found[1]
  if e == nil then break end
  local frame = nil
  local fields = e[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'frame' then frame = fields[j + 1] end
  end
  if frame == nil then
    out[#out + 1] = e[1]; out[#out + 1] = 'missing'; out[#out + 1] = ''
  elseif #frame > maxb then
    out[#out + 1] = e[1]; out[#out + 1] = 'big'; out[#out + 1] = tostring(#frame)
  else
    if total > 0 and total + #frame > budget then break end
    total = total + #frame
    out[#out + 1] = e[1]; out[#out + 1] = 'ok'; out[#out + 1] = frame
  end
  pos = e[1]
end
return out
"""


class FrameReader:
    """Read feature frames of the sources this worker owns, in order per source.

    Parameters
    ----------
    client : redis.Redis
        Connection; its socket timeout must exceed a round trip.
    prefix : str
        Key prefix.
    sources : sequence of str or None
        Only ever claim these sources; ``None``: any source in ``{prefix}:sources:frames``.
    worker_id : str or None
        Unique id of this worker (default: host, pid and a random suffix; at most 64 characters
        of a source id's alphabet, so it also names the worker's metrics hash).
    lease_ms : int
        Lease lifetime, ms; renewed every quarter of it while :meth:`read` or :meth:`keepalive`
        is called, when free sources are also claimed.
    warmup : int
        Frames replayed (``replay=True``) before the cursor when taking over a source
        (59 rebuilds a 60-step rolling window exactly). Only frames of the producer session of
        the cursor's frame count, and only those ``validate`` accepts.
    block_ms : int
        Longest wait in :meth:`read` for new frames, ms.
    balance : bool
        Claim at most a fair share of the sources and release the excess.
    max_entry_bytes : int
        Larger entries are rejected without being downloaded (their size is read in Redis).
    batch_bytes : int
        Most frame bytes fetched per source and read (at least one frame is).
    poll_ms : float
        Interval between fetches while waiting for frames, ms.
    validate : callable or None
        ``validate(frame) -> bool``: whether a replayed frame would be a valid step (e.g. the
        worker's own model checks), so that the rebuilt window holds the same steps as the old
        owner's.

    Notes
    -----
    Every frame :meth:`read` returns that is not a replay — rejected entries (``error`` set)
    included — must be passed to :meth:`ack` once handled; the cursor ``{prefix}:cursor:{source}``
    then moves to the newest entry up to which every frame is acknowledged (never backwards,
    never past a frame still in hand), written with the next :meth:`read`. :meth:`released`
    tells which sources were lost (drop their state).
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        sources: Sequence[str] | None = None,
        worker_id: str | None = None,
        lease_ms: int = DEFAULT_LEASE_MS,
        warmup: int = 59,
        block_ms: int = 200,
        balance: bool = True,
        max_entry_bytes: int = MAX_ENTRY_BYTES,
        batch_bytes: int = BATCH_BYTES,
        poll_ms: float = 10.0,
        validate: Callable[[Frame], bool] | None = None,
    ) -> None:
        self.client = client
        self.keys = Keys.for_client(client, prefix)
        self.only = None if sources is None else {validate_source(s) for s in sources}
        self.worker_id = validate_source(worker_id or default_worker_id())
        self.lease_ms = lease_ms
        self.warmup = warmup
        self.block_ms = block_ms
        self.balance = balance
        self.max_entry_bytes = max_entry_bytes
        self.batch_bytes = batch_bytes
        self.poll_ms = poll_ms
        self.validate = validate
        self.rejected = 0
        """Entries rejected so far (returned with ``error`` set)."""
        self.dead: frozenset[str] = frozenset()
        """Sources in the dead-letter hash at the last maintenance."""
        self._last: dict[str, str] = {}  # owned source -> last entry id read
        self._outstanding: dict[str, deque[str]] = {}  # entries handed out, not yet acked
        self._acked: dict[str, set[str]] = {}
        self._pending_ack: dict[str, str] = {}
        self._committed: dict[str, str] = {}
        self.write_cursors = True
        self.before_release: Callable[[], object] | None = None
        """Called before this worker gives a lease back on its own (handover, dead letter,
        close): e.g. the mood publisher's flush, so what it holds is written under the lease."""
        """Write cursors with :meth:`read`; ``False`` when the mood publisher writes each
        cursor atomically with its message (``infer``: see
        :class:`~streammood.bus.moods.MoodPublisher` ``fence_worker``)."""
        self._released: set[str] = set()
        self._replay: list[Frame] = []
        self._next_maintain = 0.0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._fetch = client.register_script(_FETCH)

    @property
    def owned(self) -> frozenset[str]:
        """Sources this worker holds the lease of."""
        return frozenset(self._last)

    def released(self) -> set[str]:
        """Sources lost (lease expired, given away or dead-lettered) since the last call."""
        out, self._released = self._released, set()
        return out

    def ack(self, frame: Frame) -> None:
        """Mark ``frame`` as handled (good or rejected); the cursor follows with the next
        :meth:`read`."""
        src = frame.source
        if frame.replay or src not in self._last:
            return
        outstanding = self._outstanding.get(src)
        if not outstanding or _id_key(frame.entry_id) < _id_key(outstanding[0]):
            return  # nothing in hand, or acknowledged before
        acked = self._acked[src]
        acked.add(frame.entry_id)
        done = None
        while outstanding and outstanding[0] in acked:
            done = outstanding.popleft()
            acked.discard(done)
        if done is not None:
            self._pending_ack[src] = done
            self._committed[src] = done

    def committed(self, source: str) -> str | None:
        """The entry id up to which every frame of ``source`` is acknowledged (where its cursor
        goes); ``None`` if none since this worker took the source."""
        return self._committed.get(source)

    def keepalive(self) -> None:
        """Heartbeat, renew leases and claim or release sources, if due (cheap otherwise). Call
        it between frames when a batch takes long, so leases do not lapse."""
        now = time.monotonic()
        if now >= self._next_maintain:
            self._maintain()
            self._next_maintain = time.monotonic() + self.lease_ms / 4000.0

    def read(self, count: int = 64) -> list[Frame]:
        """Up to ``count`` entries per owned source, waiting up to ``block_ms`` for new ones.

        Entries come in stream order per source (replays of a source taken over first). Entries
        that cannot be frames come back with :attr:`Frame.error` set and are counted in
        :attr:`rejected`. Redis errors propagate (the caller retries).
        """
        deadline = time.monotonic() + self.block_ms / 1000.0
        while True:
            self.keepalive()
            self._write_acks()
            out, self._replay = self._replay, []
            if self._last:
                out += self._fetch_new(count)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            time.sleep(min(self.poll_ms / 1000.0, remaining))

    def dead_letter(self, source: str, info: dict[str, Any]) -> None:
        """Move ``source`` to the dead-letter hash ``{prefix}:deadletter`` (field: the source,
        value: ``info`` as JSON) and give it up; no worker claims it until the field is deleted
        (a new capture session does that)."""
        self._flush_before_release()
        self._write_acks(force=True)
        pipe = pipeline(self.client)
        pipe.hset(self.keys.dead_letter, source, json.dumps(info, separators=(",", ":")))
        pipe.execute()
        self._release(keys=[self.keys.lease(source)], args=[self.worker_id])
        self._drop(source)
        self.dead = self.dead | {source}

    def close(self) -> None:
        """Write pending cursors and give every lease back."""
        try:
            if self._last:
                self._flush_before_release()
            self._write_acks()
            for src in list(self._last):
                self._release(keys=[self.keys.lease(src)], args=[self.worker_id])
            self.client.zrem(self.keys.workers, self.worker_id)
        except redis.exceptions.RedisError as exc:
            log.warning("could not release sources cleanly: %s", exc)
        self._last.clear()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _fetch_raw(self, pipe: Any, src: str, start: str, count: int, back: bool = False) -> None:
        self._fetch(
            keys=[self.keys.frames_stream(src)],
            args=[start, count, self.max_entry_bytes, self.batch_bytes, "1" if back else "0"],
            client=pipe,
        )

    def _entries(self, src: str, reply: list) -> list[Frame]:
        """Frames (good or rejected) from one fetch reply, in reply order."""
        out = []
        for i in range(0, len(reply) - 2, 3):
            eid, kind, payload = _text(reply[i]), _text(reply[i + 1]), reply[i + 2]
            if kind == "ok":
                out.append(self._decode(src, eid, payload))
            elif kind == "big":
                out.append(
                    self._rejected(
                        src,
                        eid,
                        f"stream entry is {_text(payload)} bytes, more than "
                        f"{self.max_entry_bytes} (not downloaded)",
                    )
                )
            else:
                out.append(self._rejected(src, eid, "stream entry has no 'frame' field"))
        return out

    def _fetch_new(self, count: int) -> list[Frame]:
        sources = sorted(self._last)
        pipe = pipeline(self.client)
        for src in sources:
            self._fetch_raw(pipe, src, self._last[src], count)
        out = []
        for src, reply in zip(sources, pipe.execute(), strict=True):
            if src not in self._last:
                continue
            for frame in self._entries(src, reply or []):
                self._last[src] = frame.entry_id
                self._outstanding.setdefault(src, deque()).append(frame.entry_id)
                if frame.error is not None:
                    self.rejected += 1
                out.append(frame)
        return out

    def _rejected(self, src: str, eid: str, reason: str) -> Frame:
        return Frame(src, -1, 0.0, 0.0, {}, {}, eid, False, reason)

    def _decode(self, src: str, eid: str, raw: bytes) -> Frame:
        try:
            header, arrays = decode_frame(raw)
            if header["source"] != src:
                raise FrameError(f"frame of source {header['source']!r} in the stream of {src!r}")
        except FrameError as exc:
            return self._rejected(src, eid, str(exc))
        return Frame(
            src,
            header["seq"],
            float(header["t_start"]),
            float(header["t_end"]),
            arrays,
            header,
            eid,
        )

    def _write_acks(self, force: bool = False) -> None:
        if not self._pending_ack or not (self.write_cursors or force):
            return
        pipe = pipeline(self.client)
        for src, eid in self._pending_ack.items():
            pipe.set(self.keys.cursor(src), eid)
        pipe.execute()
        self._pending_ack.clear()

    def _maintain(self) -> None:
        """Heartbeat, renew leases, claim or release sources towards a fair share."""
        now_ms = int(time.time() * 1000)
        pipe = pipeline(self.client)
        pipe.zadd(self.keys.workers, {self.worker_id: now_ms + self.lease_ms})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms)
        pipe.zcard(self.keys.workers)
        pipe.smembers(self.keys.frame_sources)
        pipe.hkeys(self.keys.dead_letter)
        _, _, n_workers, members, dead = pipe.execute()
        self.dead = frozenset(_text(d) for d in dead)
        owned = sorted(self._last)
        if owned:
            pipe = pipeline(self.client)
            for src in owned:
                self._renew(
                    keys=[self.keys.lease(src)], args=[self.worker_id, self.lease_ms], client=pipe
                )
            for src, ok in zip(owned, pipe.execute(), strict=True):
                if not ok:
                    log.warning("worker %s lost the lease of source %s", self.worker_id, src)
                    self._drop(src)
        candidates = []
        for raw in members:
            src = _text(raw)
            try:
                validate_source(src)
            except SourceIdError:
                continue
            if (self.only is None or src in self.only) and src not in self.dead:
                candidates.append(src)
        for src in [s for s in self._last if s in self.dead]:
            self._release(keys=[self.keys.lease(src)], args=[self.worker_id])
            self._drop(src)
        share = len(candidates)
        if self.balance and n_workers > 1:
            share = math.ceil(len(candidates) / n_workers)
        while self.balance and len(self._last) > share:
            src = sorted(self._last)[-1]
            self._flush_before_release()
            self._write_acks()
            self._release(keys=[self.keys.lease(src)], args=[self.worker_id])
            log.info("worker %s hands source %s over (fair share %d)", self.worker_id, src, share)
            self._drop(src)
        free = [s for s in sorted(candidates) if s not in self._last]
        wanted = max(0, share - len(self._last))
        if not free or not wanted:
            return
        pipe = pipeline(self.client)
        for src in free:
            pipe.set(self.keys.lease(src), self.worker_id, nx=True, px=self.lease_ms)
        won = [src for src, ok in zip(free, pipe.execute(), strict=True) if ok]
        for src in won[:wanted]:
            self._claim(src)
        for src in won[wanted:]:  # more came free than this worker's share: give them back
            self._release(keys=[self.keys.lease(src)], args=[self.worker_id])

    def _claim(self, src: str) -> None:
        cursor = self.client.get(self.keys.cursor(src))
        self._outstanding[src] = deque()
        self._acked[src] = set()
        if cursor is None:
            self._last[src] = "0-0"
            log.info("worker %s took source %s from its first frame", self.worker_id, src)
            return
        cursor = _text(cursor)
        self._last[src] = cursor
        self._replay.extend(self._warmup_frames(src, cursor))
        log.info("worker %s took source %s over after entry %s", self.worker_id, src, cursor)

    def _warmup_frames(self, src: str, cursor: str) -> list[Frame]:
        """Up to ``warmup`` valid frames up to ``cursor`` (inclusive) of the cursor frame's
        session, oldest first, flagged ``replay``."""
        if self.warmup <= 0:
            return []
        got: list[Frame] = []
        session: str | None = None
        first = True
        later_seq: int | None = None  # seq of the frame after this one (going back)
        start, scanned, limit = cursor, 0, 4 * self.warmup + 16
        while len(got) < self.warmup and scanned < limit:
            pipe = pipeline(self.client)
            self._fetch_raw(pipe, src, start, min(64, limit - scanned), back=True)
            (reply,) = pipe.execute()
            entries = self._entries(src, reply or [])
            if not entries:
                break
            start = f"({entries[-1].entry_id}"
            for frame in entries:
                scanned += 1
                if frame.error is not None:
                    continue
                if first:
                    session, first = frame.session, False
                elif frame.session != session or (later_seq is not None and frame.seq >= later_seq):
                    return [replace(f, replay=True) for f in reversed(got)]  # an older session
                later_seq = frame.seq
                if self.validate is None or self.validate(frame):
                    got.append(frame)
                    if len(got) >= self.warmup:
                        break
        return [replace(f, replay=True) for f in reversed(got)]

    def _flush_before_release(self) -> None:
        if self.before_release is not None:
            try:
                self.before_release()
            except Exception as exc:  # noqa: BLE001 - releasing must go on
                log.warning("before_release failed: %s", exc)

    def _drop(self, src: str) -> None:
        self._last.pop(src, None)
        self._pending_ack.pop(src, None)
        self._committed.pop(src, None)
        self._outstanding.pop(src, None)
        self._acked.pop(src, None)
        self._replay = [f for f in self._replay if f.source != src]
        self._released.add(src)


def default_worker_id() -> str:
    """``host-pid-xxxxxx`` made to fit a source id (at most 64 characters)."""
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("-._") or "host"
    suffix = f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return host[: 64 - len(suffix)] + suffix
