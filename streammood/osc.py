"""The OSC bridge: every mood message forwarded to Open Sound Control, for stage and lighting
software.

Per message of source ``ID`` (UDP, one OSC message each, in this order):

=============================  =========================  ========================================
address                        arguments                  meaning
=============================  =========================  ========================================
``/streammood/ID/valence``     float                      valence in [-1, 1]
``/streammood/ID/arousal``     float                      arousal in [-1, 1]
``/streammood/ID/quadrant``    string                     ``AP``, ``AN``, ``PP`` or ``PN``
``/streammood/ID/probs``       4 floats                   P(AP), P(AN), P(PP), P(PN)
``/streammood/ID/segment``     float                      only when ``segment_start`` changes: the
                                                          stream second the new segment began
=============================  =========================  ========================================

With smoothing (``--smooth SECONDS``) valence, arousal and the probabilities are exponential
moving averages with that time constant in stream time, and the quadrant is the most probable one
of the smoothed probabilities (lights drift instead of flicker).

The mapping (:func:`osc_messages`, :class:`Smoother`, :class:`OscMapper`) is pure; the I/O
(:func:`run_bridge`) reads the moods from Redis and sends UDP datagrams with python-osc.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streammood.bus.keys import validate_source
from streammood.bus.schema import QUADRANTS
from streammood.errors import StreammoodError

ADDRESS_ROOT = "/streammood"

OscMessage = tuple[str, list[Any]]
"""An OSC address and its arguments."""


class OscTargetError(StreammoodError):
    """A ``--target`` that is not ``HOST:PORT``."""


def parse_target(target: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` (``[::1]:9000`` for IPv6).

    Examples
    --------
    >>> parse_target("127.0.0.1:9000")
    ('127.0.0.1', 9000)
    >>> parse_target("[::1]:57120")
    ('::1', 57120)
    """
    host, sep, port = target.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OscTargetError(f"OSC target {target!r} must be HOST:PORT, e.g. 127.0.0.1:9000")
    return host, int(port)


def osc_messages(mood: Mapping[str, Any], segment_changed: bool = False) -> list[OscMessage]:
    """The OSC messages for one mood (a decoded mood message, possibly smoothed).

    Parameters
    ----------
    mood : mapping
        At least ``source``, ``valence``, ``arousal``, ``quadrant``, ``probs``; with
        ``segment_changed`` also ``segment_start``.
    segment_changed : bool
        Add the ``/segment`` message.
    """
    base = f"{ADDRESS_ROOT}/{validate_source(mood['source'])}"
    out: list[OscMessage] = [
        (f"{base}/valence", [float(mood["valence"])]),
        (f"{base}/arousal", [float(mood["arousal"])]),
        (f"{base}/quadrant", [str(mood["quadrant"])]),
        (f"{base}/probs", [float(mood["probs"][q]) for q in QUADRANTS]),
    ]
    if segment_changed:
        out.append((f"{base}/segment", [float(mood["segment_start"])]))
    return out


@dataclass
class Smoother:
    """Exponential moving average of one source's mood, time constant ``seconds`` of stream time.

    ``update`` returns the mood with ``valence``, ``arousal``, ``probs`` smoothed and ``quadrant``
    the argmax of the smoothed probabilities; other fields pass through. ``seconds`` 0 passes
    everything through unchanged. A stream time that goes backwards (a new session) restarts it.
    """

    seconds: float
    _t: float | None = field(default=None, repr=False)
    _state: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not (self.seconds >= 0 and math.isfinite(self.seconds)):
            raise ValueError(f"smoothing time constant must be >= 0 s, got {self.seconds!r}")

    def update(self, mood: Mapping[str, Any]) -> dict[str, Any]:
        """The smoothed copy of ``mood``."""
        out = dict(mood)
        if self.seconds == 0:
            return out
        x = [float(mood["valence"]), float(mood["arousal"])]
        x += [float(mood["probs"][q]) for q in QUADRANTS]
        t = float(mood["t_end"])
        if self._t is None or t < self._t:
            self._state = x
        else:
            alpha = 1.0 - math.exp(-(t - self._t) / self.seconds)
            self._state = [s + alpha * (v - s) for s, v in zip(self._state, x, strict=True)]
        self._t = t
        v, a, *p = self._state
        total = sum(p) or 1.0
        probs = {q: pq / total for q, pq in zip(QUADRANTS, p, strict=True)}
        out.update(
            valence=v,
            arousal=a,
            probs=probs,
            quadrant=max(QUADRANTS, key=lambda q: probs[q]),
        )
        return out


@dataclass
class OscMapper:
    """Mood messages of any number of sources to OSC messages (per-source smoothing and
    segment-change tracking).

    Parameters
    ----------
    sources : iterable of str or None
        Only these sources; ``None`` or empty: all.
    smooth : float
        Smoothing time constant, seconds (0: none).
    """

    sources: Iterable[str] | None = None
    smooth: float = 0.0
    _only: frozenset[str] = field(init=False, repr=False)
    _smoothers: dict[str, Smoother] = field(default_factory=dict, init=False, repr=False)
    _segments: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._only = frozenset(validate_source(s) for s in (self.sources or ()))
        Smoother(self.smooth)  # validates

    def map(self, mood: Mapping[str, Any]) -> list[OscMessage]:
        """The OSC messages for one decoded mood message (empty for a filtered-out source)."""
        source = mood["source"]
        if self._only and source not in self._only:
            return []
        changed = False
        segment = mood.get("segment_start")
        if isinstance(segment, int | float) and not isinstance(segment, bool):
            before = self._segments.get(source)
            changed = before is not None and segment != before
            self._segments[source] = float(segment)
        smoother = self._smoothers.setdefault(source, Smoother(self.smooth))
        return osc_messages(smoother.update(mood), segment_changed=changed)


@dataclass
class BridgeStats:
    """What the bridge has done."""

    moods: int = 0
    sent: int = 0
    send_errors: int = 0
    redis_up: bool = False


def run_bridge(
    redis_url: str,
    prefix: str,
    target: tuple[str, int],
    *,
    sources: Iterable[str] | None = None,
    smooth: float = 0.0,
    stop: threading.Event | None = None,
    on_state: Callable[[bool], None] | None = None,
    count: int | None = None,
) -> BridgeStats:
    """Forward every mood published under ``prefix`` to OSC at ``target`` until ``stop`` is set
    (or ``count`` moods were forwarded, or Ctrl-C). Survives Redis restarts.

    Parameters
    ----------
    redis_url, prefix : str
        Where the moods are.
    target : (str, int)
        OSC receiver (UDP).
    sources, smooth
        See :class:`OscMapper`.
    stop : threading.Event or None
        Set it to end the bridge (from another thread).
    on_state : callable or None
        Called with ``True`` when the Redis subscription is up, ``False`` when it is lost.
    count : int or None
        Stop after this many moods.
    """
    from pythonosc.udp_client import SimpleUDPClient

    from streammood.bus.live import LiveMoods

    mapper = OscMapper(sources, smooth)
    host, port = target
    try:
        client = SimpleUDPClient(host, port)
    except OSError as exc:
        raise OscTargetError(f"cannot send OSC to {host}:{port}: {exc}") from None
    stats = BridgeStats()

    def state(up: bool) -> None:
        stats.redis_up = up
        if on_state is not None:
            on_state(up)

    live = LiveMoods(redis_url, prefix, on_state=state, poll=0.2)

    async def main() -> None:
        async def watch_stop() -> None:
            while stop is None or not stop.is_set():
                await asyncio.sleep(0.1)
            live.stop()

        watcher = asyncio.create_task(watch_stop())
        try:
            async for mood in live:
                messages = mapper.map(mood.data)
                for address, args in messages:
                    try:
                        client.send_message(address, args)
                        stats.sent += 1
                    except OSError:  # a full socket buffer, an unreachable network
                        stats.send_errors += 1
                if messages:
                    stats.moods += 1
                if count is not None and stats.moods >= count:
                    break
        finally:
            watcher.cancel()

    asyncio.run(main())
    return stats
