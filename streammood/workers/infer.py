"""``infer``: feature frames of many sources from Redis → moods on Redis, one model state per
source. Several workers share the sources (see :mod:`streammood.bus.frames`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from streammood.bus.codec import FrameError
from streammood.bus.frames import FrameReader, decode_inputs
from streammood.bus.keys import DEFAULT_PREFIX
from streammood.bus.moods import MoodPublisher
from streammood.bus.schema import MoodMessage
from streammood.runtime.artifact import ModelArtifact
from streammood.runtime.rolling import StepModel
from streammood.workers.tagging import MoodStage

log = logging.getLogger(__name__)


@dataclass
class InferStats:
    """Counters of one ``infer`` worker."""

    published: int = 0
    replayed: int = 0
    rejected: int = 0
    redis_errors: int = 0


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
) -> InferStats:
    """Consume frames until ``stop``, Ctrl-C, ``max_messages`` published, or ``idle_timeout``
    seconds without frames. Malformed frames are logged with the reason and skipped."""
    stop = stop or threading.Event()
    stats = InferStats()
    ident = artifact.embedder_id
    stages: dict[str, MoodStage] = {}
    step_model = StepModel(artifact)  # one interpreter for every source of this worker
    reader = FrameReader(client, prefix, sources=sources, worker_id=worker_id)
    last_frame = time.monotonic()
    backoff = 0.1
    try:
        while not stop.is_set():
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
            stats.rejected = reader.rejected
            if frames:
                last_frame = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last_frame > idle_timeout:
                break
            for frame in frames:
                stage = stages.get(frame.source) or stages.setdefault(
                    frame.source, MoodStage(artifact, frame.source, step_model)
                )
                try:
                    inputs = decode_inputs(frame.header, frame.arrays, ident, artifact.emb_dim)
                except FrameError as exc:
                    stats.rejected += 1
                    log.warning("rejected frame %s of %s: %s", frame.entry_id, frame.source, exc)
                    reader.ack(frame)
                    continue
                (msg,) = stage.push(inputs)
                if frame.replay:
                    stats.replayed += 1
                    continue
                publisher.publish(msg)
                reader.ack(frame)
                stats.published += 1
                if on_message is not None:
                    on_message(msg)
                if max_messages is not None and stats.published >= max_messages:
                    return stats
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    return stats
