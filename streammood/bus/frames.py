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

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from streammood.bus.codec import FrameError, decode_frame, encode_frame
from streammood.bus.keys import DEFAULT_PREFIX, Keys, SourceIdError, validate_source
from streammood.bus.outbox import Outbox
from streammood.features.extractor import ModelInputs
from streammood.layout import MFCC_FRAMES, N_LLD_STATS, N_MFCC

log = logging.getLogger(__name__)

DEFAULT_FRAME_MAXLEN = 1_200
"""Approximate cap of a feature-frame stream (10 minutes of steps)."""


# -- model inputs <-> frame -----------------------------------------------------------------
def encode_inputs(source: str, inputs: ModelInputs, embedder: str) -> bytes:
    """One feature frame for the bus (``captured_at`` in the header when known)."""
    header: dict[str, Any] = {
        "source": source,
        "seq": inputs.seq,
        "t_start": inputs.t_start,
        "t_end": inputs.t_end,
        "embedder": embedder,
    }
    if inputs.captured_at is not None:
        header["captured_at"] = inputs.captured_at
    return encode_frame(header, {"mfcc": inputs.mfcc, "lld": inputs.lld, "emb": inputs.emb})


def decode_inputs(
    header: dict, arrays: dict[str, np.ndarray], embedder: str, emb_dim: int
) -> ModelInputs:
    """Check a decoded frame against the model and turn it into :class:`ModelInputs`.

    Raises
    ------
    FrameError
        Wrong embedder, missing array or wrong shape.
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
        if not np.all(np.isfinite(arrays[name])):
            raise FrameError(f"frame seq {header.get('seq')}: {name} holds NaN or inf")
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
class FramePublisher(Outbox[tuple[str, bytes]]):
    """Publish encoded feature frames: XADD (field ``frame``) to the capped stream
    ``{prefix}:frames:{source}``.

    Parameters
    ----------
    client_or_url, prefix, buffer, batch, metrics_id, backoff_start, backoff_max
        See :class:`~streammood.bus.outbox.Outbox`.
    maxlen : int
        Approximate cap of each frame stream.
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
        super().__init__(client_or_url, prefix, **kwargs)

    def begin(self, source: str) -> None:
        """Start a new session of ``source``: queue the deletion of its old frames and cursor,
        so that ``infer`` workers start it from its first new frame."""
        self._submit((validate_source(source), self._RESET))

    def publish(self, frame: bytes, source: str) -> None:
        """Queue one frame of ``source`` (made by :func:`encode_inputs` or
        :func:`~streammood.bus.codec.encode_frame`; not decoded here) for the source's stream.
        Returns at once; never raises on Redis trouble."""
        if not isinstance(frame, bytes) or not frame:
            raise TypeError("expected the bytes of an encoded frame")
        self._submit((validate_source(source), frame))

    def _write(self, pipe: redis.client.Pipeline, items: Sequence[tuple[str, bytes]]) -> None:
        for source, frame in items:
            if frame is self._RESET or not frame:
                pipe.delete(self.keys.frames_stream(source), self.keys.cursor(source))
                continue
            pipe.xadd(
                self.keys.frames_stream(source),
                {"frame": frame},
                maxlen=self.maxlen,
                approximate=True,
            )
        pipe.sadd(self.keys.frame_sources, *{s for s, _ in items})


# -- reading --------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Frame:
    """One decoded feature frame.

    Attributes
    ----------
    source : str
        Source id.
    seq : int
        Step number.
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
    """

    source: str
    seq: int
    t_start: float
    t_end: float
    arrays: dict[str, np.ndarray] = field(repr=False)
    header: dict[str, Any] = field(repr=False)
    entry_id: str
    replay: bool = False


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


class FrameReader:
    """Read feature frames of the sources this worker owns, in order per source.

    Parameters
    ----------
    client : redis.Redis
        Connection; its socket timeout must exceed ``block_ms``.
    prefix : str
        Key prefix.
    sources : sequence of str or None
        Only ever claim these sources; ``None``: any source in ``{prefix}:sources:frames``.
    worker_id : str or None
        Unique id of this worker (default: host, pid and a random suffix).
    lease_ms : int
        Lease lifetime, ms; renewed every third of it while :meth:`read` is called.
    warmup : int
        Frames replayed (``replay=True``) before the cursor when taking over a source
        (59 rebuilds a 60-step rolling window exactly).
    block_ms : int
        Longest wait in :meth:`read` for new frames, ms.
    balance : bool
        Claim at most a fair share of the sources and release the excess.

    Notes
    -----
    Call :meth:`ack` with each frame once its output is published, then the cursor is written
    at the next :meth:`read`. :meth:`released` tells which sources were lost (drop their state).
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        sources: Sequence[str] | None = None,
        worker_id: str | None = None,
        lease_ms: int = 5_000,
        warmup: int = 59,
        block_ms: int = 200,
        balance: bool = True,
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.only = None if sources is None else {validate_source(s) for s in sources}
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_ms = lease_ms
        self.warmup = warmup
        self.block_ms = block_ms
        self.balance = balance
        self.rejected = 0
        """Malformed frames skipped so far."""
        self._last: dict[str, str] = {}  # owned source -> last entry id read
        self._pending_ack: dict[str, str] = {}
        self._released: set[str] = set()
        self._replay: list[Frame] = []
        self._next_renew = 0.0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def owned(self) -> frozenset[str]:
        """Sources this worker holds the lease of."""
        return frozenset(self._last)

    def released(self) -> set[str]:
        """Sources lost (lease expired or given away) since the last call."""
        out, self._released = self._released, set()
        return out

    def ack(self, frame: Frame) -> None:
        """Mark ``frame`` as processed (its cursor is written with the next :meth:`read`)."""
        if frame.source in self._last and not frame.replay:
            self._pending_ack[frame.source] = frame.entry_id

    def read(self, count: int = 64) -> list[Frame]:
        """Up to ``count`` frames per owned source, waiting up to ``block_ms`` for new ones.

        Frames come in stream order per source; malformed frames are logged with the reason,
        counted in :attr:`rejected` and skipped. Redis errors propagate (the caller retries).
        """
        now = time.monotonic()
        if now >= self._next_renew:
            self._maintain()
            self._next_renew = now + self.lease_ms / 3000.0
        self._write_acks()
        out, self._replay = self._replay, []
        if not self._last:
            if not out:
                time.sleep(self.block_ms / 1000.0)
            return out
        streams = {self.keys.frames_stream(s): last for s, last in self._last.items()}
        reply = self.client.xread(streams, count=count, block=None if out else self.block_ms)
        for stream, entries in reply or []:
            src = _text(stream).rsplit(":", 1)[1]
            if src not in self._last:
                continue
            for entry_id, fields in entries:
                eid = _text(entry_id)
                self._last[src] = eid
                frame = self._decode(src, eid, fields)
                if frame is not None:
                    out.append(frame)
        return out

    def close(self) -> None:
        """Write pending cursors and give every lease back."""
        try:
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
    def _decode(self, src: str, eid: str, fields: dict, replay: bool = False) -> Frame | None:
        try:
            raw = fields.get(b"frame")
            if raw is None:
                raise FrameError("stream entry has no 'frame' field")
            header, arrays = decode_frame(raw)
            if header["source"] != src:
                raise FrameError(f"frame of source {header['source']!r} in the stream of {src!r}")
        except FrameError as exc:
            self.rejected += 1
            log.warning("rejected frame %s of %s: %s", eid, self.keys.frames_stream(src), exc)
            if not replay:
                self._pending_ack[src] = eid
            return None
        return Frame(
            src,
            header["seq"],
            float(header["t_start"]),
            float(header["t_end"]),
            arrays,
            header,
            eid,
            replay,
        )

    def _write_acks(self) -> None:
        if not self._pending_ack:
            return
        pipe = self.client.pipeline(transaction=False)
        for src, eid in self._pending_ack.items():
            pipe.set(self.keys.cursor(src), eid)
        pipe.execute()
        self._pending_ack.clear()

    def _maintain(self) -> None:
        """Heartbeat, renew leases, claim or release sources towards a fair share."""
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {self.worker_id: now_ms + self.lease_ms})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms)
        pipe.zcard(self.keys.workers)
        pipe.smembers(self.keys.frame_sources)
        _, _, n_workers, members = pipe.execute()
        for src in list(self._last):
            if not self._renew(keys=[self.keys.lease(src)], args=[self.worker_id, self.lease_ms]):
                log.warning("worker %s lost the lease of source %s", self.worker_id, src)
                self._drop(src)
        candidates = []
        for raw in members:
            src = _text(raw)
            try:
                validate_source(src)
            except SourceIdError:
                continue
            if self.only is None or src in self.only:
                candidates.append(src)
        share = len(candidates)
        if self.balance and n_workers > 1:
            share = math.ceil(len(candidates) / n_workers)
        while self.balance and len(self._last) > share:
            src = sorted(self._last)[-1]
            self._write_acks()
            self._release(keys=[self.keys.lease(src)], args=[self.worker_id])
            log.info("worker %s hands source %s over (fair share %d)", self.worker_id, src, share)
            self._drop(src)
        for src in sorted(candidates):
            if len(self._last) >= share:
                break
            if src in self._last:
                continue
            if self.client.set(self.keys.lease(src), self.worker_id, nx=True, px=self.lease_ms):
                self._claim(src)

    def _claim(self, src: str) -> None:
        stream = self.keys.frames_stream(src)
        cursor = self.client.get(self.keys.cursor(src))
        if cursor is None:
            self._last[src] = "0-0"
            log.info("worker %s took source %s from its first frame", self.worker_id, src)
            return
        cursor = _text(cursor)
        self._last[src] = cursor
        if self.warmup > 0:
            entries = self.client.xrevrange(stream, max=cursor, count=self.warmup)
            for entry_id, fields in reversed(entries):
                frame = self._decode(src, _text(entry_id), fields, replay=True)
                if frame is not None:
                    self._replay.append(frame)
        log.info("worker %s took source %s over after entry %s", self.worker_id, src, cursor)

    def _drop(self, src: str) -> None:
        self._last.pop(src, None)
        self._pending_ack.pop(src, None)
        self._replay = [f for f in self._replay if f.source != src]
        self._released.add(src)
