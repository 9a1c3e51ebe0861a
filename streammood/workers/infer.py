"""``infer``: feature frames of many sources from Redis → moods on Redis, one model state per
source. Several workers share the sources (see :mod:`streammood.bus.frames`).

No frame can stop a worker. A frame that cannot become a valid step — an entry that is not a
frame or too large, a frame the model cannot use (other embedder, shapes, NaN, values beyond
:data:`~streammood.bus.frames.FEATURE_LIMITS`), a step whose message does not validate or whose
model output is not finite — is *quarantined*: counted, logged once per source with its reason,
acknowledged (the cursor passes it) and never published. A source whose last
``dead_letter_after`` frames were all quarantined is moved to the dead-letter hash
``{prefix}:deadletter`` (and named in the worker's metrics): no worker reads it until a new
capture session of it starts. Every other source is served on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from streammood.bus.codec import FrameError
from streammood.bus.frames import Frame, FrameReader, decode_inputs
from streammood.bus.keys import DEFAULT_PREFIX
from streammood.bus.moods import MoodPublisher
from streammood.bus.schema import MoodMessage
from streammood.errors import StreammoodError
from streammood.features.extractor import ModelInputs
from streammood.runtime.artifact import ModelArtifact
from streammood.runtime.checks import warm_up
from streammood.runtime.rolling import StepModel
from streammood.workers.tagging import MoodStage

log = logging.getLogger(__name__)

DEAD_LETTER_AFTER = 60
"""Consecutive quarantined frames (30 s of a source) after which the source is dead-lettered."""
METRICS_EVERY = 1.0
"""Seconds between updates of the worker's metrics fields."""


@dataclass
class SourceHealth:
    """Quarantine state of one source on this worker."""

    quarantined: int = 0
    consecutive: int = 0
    last_reason: str = ""
    dead: bool = False


@dataclass
class InferStats:
    """Counters of one ``infer`` worker.

    Attributes
    ----------
    published : int
        Moods handed to the publisher.
    replayed : int
        Warm-up frames run through the model after a takeover (not published).
    rejected : int
        Frames quarantined, for any reason (every one also counted per source in
        :attr:`health`).
    redis_errors : int
        Failed reads (retried with backoff).
    dead_letter : list of str
        Sources this worker moved to the dead-letter hash.
    health : dict
        :class:`SourceHealth` by source.
    """

    published: int = 0
    replayed: int = 0
    rejected: int = 0
    redis_errors: int = 0
    dead_letter: list[str] = field(default_factory=list)
    health: dict[str, SourceHealth] = field(default_factory=dict)

    def as_metrics(self, owned: int) -> dict[str, int | str]:
        """Fields of the worker's metrics hash."""
        return {
            "steps_published": self.published,
            "frames_replayed": self.replayed,
            "frames_rejected": self.rejected,
            "redis_errors": self.redis_errors,
            "sources_owned": owned,
            "sources_quarantining": sum(
                1 for h in self.health.values() if h.consecutive and not h.dead
            ),
            "dead_letter": len(self.dead_letter),
            "dead_letter_sources": ",".join(sorted(self.dead_letter)),
        }


def run_infer(
    client: redis.Redis,
    artifact: ModelArtifact,
    publisher: MoodPublisher,
    *,
    prefix: str = DEFAULT_PREFIX,
    sources: list[str] | None = None,
    max_messages: int | None = None,
    idle_timeout: float | None = None,
    on_message: Callable[[MoodMessage], None] | None = None,
    stop: threading.Event | None = None,
    worker_id: str | None = None,
    reader: FrameReader | None = None,
    dead_letter_after: int | None = DEAD_LETTER_AFTER,
) -> InferStats:
    """Consume frames until ``stop``, Ctrl-C, ``max_messages`` published, or ``idle_timeout``
    seconds without frames.

    Parameters
    ----------
    client, artifact, publisher
        Redis connection, the model, where moods go (give it ``metrics_id`` = the worker id to
        get the worker's metrics hash ``{prefix}:metrics:{worker}``).
    prefix, sources, worker_id
        Key prefix; only these sources; this worker's id (see
        :class:`~streammood.bus.frames.FrameReader`).
    max_messages, idle_timeout, on_message, stop
        When to stop; a callback per published message.
    reader : FrameReader, optional
        A reader to use instead of a default one (e.g. other lease timings); closed on exit.
    dead_letter_after : int or None
        Consecutive quarantined frames that dead-letter a source; ``None``: never.

    Raises
    ------
    ModelError
        The model does not compute (checked once at start, on a known input).
    """
    stop = stop or threading.Event()
    stats = InferStats()
    ident = artifact.embedder_id
    step_model = StepModel(artifact)  # one interpreter for every source of this worker
    warm_up(artifact, step_model)
    stages: dict[str, MoodStage] = {}

    def usable(frame: Frame) -> bool:
        try:
            decode_inputs(frame.header, frame.arrays, ident, artifact.emb_dim)
        except FrameError:
            return False
        return True

    if reader is None:
        reader = FrameReader(client, prefix, sources=sources, worker_id=worker_id)
    reader.validate = usable
    fenced = publisher.fence_worker is not None
    if fenced:
        if publisher.fence_worker != reader.worker_id:
            raise ValueError("the publisher's fence_worker must be the reader's worker_id")
        reader.write_cursors = False  # each cursor goes with its message, in one script
        reader.before_release = lambda: publisher.flush(2.0)
    last_frame = time.monotonic()
    next_metrics = 0.0
    backoff = 0.1

    def quarantine(frame: Frame, reason: str) -> None:
        health = stats.health.setdefault(frame.source, SourceHealth())
        if frame.replay:
            return  # the previous owner counted it
        stats.rejected += 1
        health.quarantined += 1
        health.consecutive += 1
        health.last_reason = reason
        if health.quarantined == 1:
            log.warning(
                "quarantined frame %s of source %s: %s (this source's further rejects are "
                "counted in the metrics, not logged)",
                frame.entry_id,
                frame.source,
                reason,
            )
        reader.ack(frame)
        if (
            dead_letter_after is not None
            and health.consecutive >= dead_letter_after
            and not health.dead
        ):
            health.dead = True
            stats.dead_letter.append(frame.source)
            log.error(
                "source %s dead-lettered after %d quarantined frames in a row (last: %s); "
                "it is served again when a new capture session starts",
                frame.source,
                health.consecutive,
                reason,
            )
            info = {
                "reason": reason,
                "quarantined": health.quarantined,
                "consecutive": health.consecutive,
                "entry": frame.entry_id,
                "worker": reader.worker_id,
                "at": time.time(),
            }
            try:
                reader.dead_letter(frame.source, info)
            except redis.exceptions.RedisError as exc:  # tried again at the next reject
                health.dead = False
                stats.dead_letter.remove(frame.source)
                stats.redis_errors += 1
                log.warning("could not dead-letter source %s: %s", frame.source, exc)
                return
            stages.pop(frame.source, None)

    def keepalive() -> None:
        try:
            reader.keepalive()
        except redis.exceptions.RedisError as exc:
            stats.redis_errors += 1
            log.warning("lease renewal failed (%s); retried with the next read", exc)

    def step(frame: Frame) -> MoodMessage | None:
        """The frame's message (``None`` for a replay); raises on a frame that is no step."""
        if frame.error is not None:
            raise FrameError(frame.error)
        inputs: ModelInputs = decode_inputs(frame.header, frame.arrays, ident, artifact.emb_dim)
        stage = stages.get(frame.source)
        if stage is None:
            stage = stages[frame.source] = MoodStage(artifact, frame.source, step_model)
        if frame.session != stage.session:
            stage.start_session(frame.session)  # a new producer session: a new window
        (msg,) = stage.push(inputs)
        return None if frame.replay else msg

    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_metrics:
                publisher.update_metrics(**stats.as_metrics(len(reader.owned)))
                next_metrics = now + METRICS_EVERY
            try:
                frames = reader.read()
                backoff = 0.1
            except redis.exceptions.RedisError as exc:
                stats.redis_errors += 1
                log.warning("reading frames failed (%s); retrying in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for src in reader.released():
                stages.pop(src, None)
            if frames:
                last_frame = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last_frame > idle_timeout:
                break
            for frame in frames:
                if frame.source not in reader.owned:
                    continue  # lost or dead-lettered while this batch was in hand
                try:
                    msg = step(frame)
                except StreammoodError as exc:  # FrameError, MessageError, OutputError, ...
                    quarantine(frame, str(exc))
                    continue
                except Exception as exc:  # noqa: BLE001 - no frame may stop the worker
                    quarantine(frame, f"unexpected {type(exc).__name__}: {exc}")
                    continue
                finally:
                    keepalive()
                if msg is None:
                    stats.replayed += 1
                    continue
                stats.health.setdefault(frame.source, SourceHealth()).consecutive = 0
                reader.ack(frame)
                publisher.publish(msg, cursor=reader.committed(frame.source) if fenced else None)
                stats.published += 1
                if on_message is not None:
                    on_message(msg)
                if max_messages is not None and stats.published >= max_messages:
                    return stats
    except KeyboardInterrupt:
        pass
    finally:
        publisher.update_metrics(**stats.as_metrics(len(reader.owned)))
        reader.close()
    return stats
