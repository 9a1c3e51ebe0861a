"""Producer sessions: one producer (``capture`` or ``listen``) per source at a time, fenced, and
a restarted producer continues the source's ``seq`` and stream time.

A producer opens a session with :func:`open_session` before its first step:

- It takes the source's producer lease ``{prefix}:producer:{source}`` (the new session id,
  expiring after :data:`PRODUCER_LEASE_MS`). If another session holds it, the open is refused
  (:class:`ProducerBusyError`, one line) unless ``takeover`` is asked for; the lease is renewed by
  every write of the session, and given back by :func:`close_session` on a clean exit.
- It reads the session hash ``{prefix}:session:{source}`` — where the last session ended
  (``next_seq``, ``t_next``) — and starts there: the new session's first step has ``seq =
  next_seq`` and starts at stream time ``t_next``. Consumers tell sessions apart by the
  ``session`` id every frame and mood message carries (and the window starts over at a new
  session: its audio does not continue the last one's).
- It clears the source from the dead-letter hash (a new session is a new chance) and, if it was
  there, moves the source's cursor to the end of its frame stream, so workers start at the new
  session's first frame instead of the dead one's leftovers.

Every write of the session (a frame, or a mood in ``listen``) runs a Lua script that checks the
lease first: it goes through if the lease is the session's, or free and the session hash still
names this session (then the lease is taken again, e.g. after a Redis outage); otherwise it is
*fenced* — refused and counted — and the producer stops (:class:`ProducerFencedError`): another
session took the source over. Each accepted write also records ``next_seq`` and ``t_next`` in
the session hash, so the next session continues from what Redis actually has.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from streammood.bus.keys import DEFAULT_PREFIX, Keys, validate_source
from streammood.errors import StreammoodError

PRODUCER_LEASE_MS = 3_000
"""Lifetime of a producer lease, ms, renewed by every write (a step every 500 ms): a producer
killed without closing its session blocks a new one for at most this long (or use takeover)."""


class ProducerBusyError(StreammoodError):
    """Another producer session holds the source."""


class ProducerFencedError(StreammoodError):
    """This producer's session was taken over by another: its writes are refused."""


@dataclass(frozen=True)
class ProducerSession:
    """An open producer session of one source.

    Attributes
    ----------
    source : str
        Source id.
    session : str
        This session's id (12 hex digits).
    seq0 : int
        ``seq`` of the session's first step (where the last session ended; 0 for a new source).
    t0 : float
        Stream time at which the session's first step starts, s.
    previous : str or None
        Id of the source's previous session.
    took_over : str or None
        Id of the live session this one took over (``takeover=True``), else ``None``.
    lease_ms : int
        Producer lease lifetime, ms.
    """

    source: str
    session: str
    seq0: int
    t0: float
    previous: str | None
    took_over: str | None
    lease_ms: int = PRODUCER_LEASE_MS

    def describe(self) -> str:
        """One line: the session, where it starts, what it continues or took over."""
        start = f"session {self.session} of '{self.source}' starts at step {self.seq0}"
        start += f", {self.t0:.1f} s of stream time"
        if self.took_over:
            start += f", taking over session {self.took_over}"
        elif self.previous:
            start += f", after session {self.previous}"
        return start


_OPEN = """
-- KEYS[1] producer lease, KEYS[2] session hash. ARGV: [1] new session, [2] lease ms,
-- [3] '1' to take over, [4] owner, [5] now (s). Returns {1, holder, previous, next_seq, t_next}
-- or {0, holder, pttl, holder's owner}.
local holder = redis.call('GET', KEYS[1])
if holder and ARGV[3] ~= '1' then
  return {0, holder, redis.call('PTTL', KEYS[1]), redis.call('HGET', KEYS[2], 'owner') or ''}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local prev = redis.call('HMGET', KEYS[2], 'session', 'next_seq', 't_next')
redis.call('HSET', KEYS[2], 'session', ARGV[1], 'owner', ARGV[4], 'started_at', ARGV[5],
           'previous', prev[1] or '')
return {1, holder or '', prev[1] or '', prev[2] or '0', prev[3] or '0'}
"""

_CLOSE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

FENCE_LUA = """
-- The producer fence, shared by the frame and mood write scripts: KEYS[2] producer lease,
-- KEYS[3] session hash, ARGV[2] session id, ARGV[3] lease ms. True if the write may go on.
local function producer_fence()
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= ARGV[2] then return false end
  if not holder then
    local current = redis.call('HGET', KEYS[3], 'session')
    if current and current ~= ARGV[2] then return false end
  end
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return true
end
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def new_session_id() -> str:
    """A fresh session id (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def owner_name() -> str:
    """``host pid`` of this process (shown when a second producer is refused)."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def open_session(
    client: redis.Redis,
    prefix: str = DEFAULT_PREFIX,
    source: str = "",
    *,
    takeover: bool = False,
    lease_ms: int = PRODUCER_LEASE_MS,
) -> ProducerSession:
    """Open a producer session of ``source`` (see the module notes).

    Raises
    ------
    ProducerBusyError
        Another session holds the source and ``takeover`` is false.
    redis.RedisError
        Redis is unreachable.
    """
    keys = Keys.for_client(client, prefix)
    validate_source(source)
    session = new_session_id()
    script = client.register_script(_OPEN)
    reply = script(
        keys=[keys.producer(source), keys.session(source)],
        args=[session, lease_ms, "1" if takeover else "0", owner_name(), f"{time.time():.3f}"],
    )
    if int(reply[0]) == 0:
        holder, ttl, owner = _text(reply[1]), int(reply[2]), _text(reply[3]) or "unknown"
        raise ProducerBusyError(
            f"source '{source}' is already being produced by session {holder} ({owner}; its "
            f"lease runs out in {max(ttl, 0) / 1000:.1f} s unless renewed): stop that producer, "
            "use another --source-id, or pass --takeover to take the source over"
        )
    holder, previous = _text(reply[1]) or None, _text(reply[2]) or None
    if client.hdel(keys.dead_letter, source):
        # the source was given up on: workers skip what is left of the dead session's frames
        last = client.xrevrange(keys.frames_stream(source), count=1)
        if last:
            client.set(keys.cursor(source), _text(last[0][0]))
    return ProducerSession(
        source=source,
        session=session,
        seq0=int(_text(reply[3]) or 0),
        t0=float(_text(reply[4]) or 0.0),
        previous=previous,
        took_over=holder,
        lease_ms=lease_ms,
    )


def close_session(client: redis.Redis, prefix: str, session: ProducerSession) -> bool:
    """Give the producer lease back (if still this session's), so the next session need not
    wait for it to run out. Returns whether it was given back; never raises on Redis trouble."""
    keys = Keys.for_client(client, prefix)
    try:
        script = client.register_script(_CLOSE)
        return bool(script(keys=[keys.producer(session.source)], args=[session.session]))
    except redis.exceptions.RedisError:
        return False


_RENEW = (
    FENCE_LUA
    + """
if producer_fence() then return 1 end
return 0
"""
)


def renew_session(client: redis.Redis, prefix: str, session: ProducerSession) -> bool | None:
    """Renew the producer lease of ``session`` between writes (a many-source producer whose
    source is starting or reconnecting); the same check as a write's fence.

    Returns
    -------
    bool or None
        ``True``: renewed; ``False``: another session holds the source (fenced); ``None``:
        Redis did not answer (never raises on Redis trouble).
    """
    keys = Keys.for_client(client, prefix)
    lease = keys.producer(session.source)
    try:
        script = client.register_script(_RENEW)
        reply = script(
            keys=[lease, lease, keys.session(session.source)],
            args=["", session.session, session.lease_ms],
        )
    except redis.exceptions.RedisError:
        return None
    return bool(int(reply))
