"""What the terminal shows: one compact line per mood message, the live line of ``listen``, and
the message feed of ``streammood subscribe``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from streammood.bus.keys import DEFAULT_PREFIX
from streammood.bus.schema import MoodMessage

if TYPE_CHECKING:  # only annotations: `subscribe` must not import the audio and feature code
    from streammood.bus.outbox import PublisherStats
    from streammood.workers.listen import ListenStats


def mood_line(msg: MoodMessage, now: float | None = None) -> str:
    """A compact one-line rendering: stream time, source, quadrant, valence, arousal, window
    and where its segment began (``[24 steps, since 12.5 s]``; ``early`` while the segment's
    embedding is not in, ``change`` on the step that detected one), and, when the message
    carries ``captured_at`` and ``now`` (Unix s, the reader's clock) is given, the delay from
    capture to now (``delay 0.18s``)."""
    clock = time.strftime("%H:%M:%S", time.localtime(msg.emitted_at))
    delay = ""
    if now is not None and msg.captured_at is not None:
        delay = f"  delay {now - msg.captured_at:.2f}s"
    early = "" if msg.embedding_ready else ", early"
    change = "  change" if msg.changed else ""
    return (
        f"{clock}  {msg.source:<16} t={msg.t_end:8.1f}s  {msg.quadrant}  "
        f"v={msg.valence:+.2f}  a={msg.arousal:+.2f}  p={msg.probs[msg.quadrant]:.2f}  "
        f"[{msg.window_steps} steps, since {msg.segment_start:.1f} s{early}]{change}{delay}"
    )


def listen_line(msg: MoodMessage, stats: ListenStats, publisher: PublisherStats) -> str:
    """:func:`mood_line`, plus what went wrong so far in ``listen`` (dropped steps, audio
    overflows, Redis away)."""
    trouble = ""
    if stats.dropped_steps or stats.overflows or stats.dropped_blocks:
        trouble = (
            f"  dropped steps {stats.dropped_steps}, audio overflows {stats.overflows}, "
            f"dropped blocks {stats.dropped_blocks}"
        )
    if not publisher.connected:
        trouble += f"  Redis away: {publisher.buffered} buffered"
    return mood_line(msg) + trouble


def watch(
    redis_url: str | None = None,
    source: str | None = None,
    history: int = 0,
    count: int | None = None,
    prefix: str = DEFAULT_PREFIX,
    idle_timeout: float | None = None,
    on_endpoint: Any = None,
) -> Iterator[MoodMessage]:
    """What ``streammood subscribe`` shows: find Redis (configured URL, the default address, or
    a running embedded server), then yield mood messages (history first), at most ``count``.

    ``on_endpoint`` is called with the :class:`~streammood.bus.embedded.RedisEndpoint` found
    (e.g. to print where Redis is).
    """
    from streammood.bus.connection import connect
    from streammood.bus.embedded import ensure_redis
    from streammood.bus.moods import subscribe_moods

    endpoint = ensure_redis(redis_url, start=False)
    if on_endpoint is not None:
        on_endpoint(endpoint)
    client = connect(endpoint.url)
    try:
        for n, msg in enumerate(
            subscribe_moods(client, prefix, source, history, idle_timeout=idle_timeout), 1
        ):
            yield msg
            if count is not None and n >= count:
                return
    finally:
        client.close()
