"""``listen``: capture → features → streaming model → publish, in one process.

Three threads, as sounddevice's examples do it: PortAudio's callback only copies blocks into the
source's bounded queue; the feature thread frames them and extracts features; the calling thread
runs the model and hands messages to the publisher (whose own thread talks to Redis, buffering
through outages). Neither the callback nor the feature thread ever waits on Redis or the model:
when inference falls behind, steps queue up to a bound, then the oldest are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streammood.audio.sources import AudioSource, FileSource
from streammood.bus.moods import MoodPublisher
from streammood.bus.outbox import BoundedQueue
from streammood.bus.schema import MoodMessage
from streammood.bus.sessions import ProducerFencedError
from streammood.errors import StreammoodError
from streammood.features.extractor import ModelInputs
from streammood.stage import Stage
from streammood.workers.tagging import MoodStage

log = logging.getLogger(__name__)


@dataclass
class ListenStats:
    """What happened during one ``listen`` run (shown in the live line and the metrics hash)."""

    steps: int = 0
    dropped_steps: int = 0
    overflows: int = 0
    dropped_blocks: int = 0
    gaps: int = 0
    rejected: int = 0
    """Steps whose model output was not a valid prediction (never published)."""
    errors: list[Exception] = field(default_factory=list)

    def as_metrics(self) -> dict[str, int]:
        return {
            "steps": self.steps,
            "dropped_steps": self.dropped_steps,
            "rejected_steps": self.rejected,
            "audio_overflows": self.overflows,
            "audio_dropped_blocks": self.dropped_blocks,
        }


def _feature_loop(
    source: AudioSource,
    stage: Stage[np.ndarray, ModelInputs],
    queue: BoundedQueue[ModelInputs],
    stop: threading.Event,
    max_steps: int | None,
    errors: list[Exception],
) -> None:
    produced = 0
    try:
        for block in source:
            for inputs in stage.push(block, captured_at=getattr(source, "captured_at", None)):
                if max_steps is None or produced < max_steps:
                    queue.put(inputs)
                    produced += 1
            if stop.is_set() or (max_steps is not None and produced >= max_steps):
                break
        else:  # end of the source: the last complete steps
            for inputs in stage.finish():
                if max_steps is None or produced < max_steps:
                    queue.put(inputs)
                    produced += 1
    except Exception as exc:  # noqa: BLE001 - re-raised in the calling thread
        errors.append(exc)
    finally:  # this thread ran the stage: it stops it (openSMILE's and musicnn's threads)
        source.close()
        stage.close()
        queue.close()


def run_listen(
    source: AudioSource,
    features: Stage[np.ndarray, ModelInputs],
    mood: MoodStage,
    publisher: MoodPublisher | None,
    *,
    duration: float | None = None,
    on_message: Callable[[MoodMessage, ListenStats], None] | None = None,
    queue_steps: int = 120,
    stop: threading.Event | None = None,
) -> ListenStats:
    """Tag ``source`` until it ends, ``duration`` seconds of audio have been tagged, ``stop`` is
    set, or Ctrl-C; every completed step is published before returning. The source and both
    stages are closed on the way out, however the run ends.

    Parameters
    ----------
    source : AudioSource
        A device or a file.
    features : Stage
        Audio blocks at ``source.sample_rate`` → :class:`ModelInputs`
        (:func:`~streammood.workers.tagging.feature_stage`); it runs on the feature thread.
    mood : MoodStage
        Model inputs → messages of one source (its ``source`` is the id in messages and keys).
    publisher : MoodPublisher or None
        Where messages go (``None``: only ``on_message``).
    duration : float, optional
        Seconds of audio to tag.
    on_message : callable, optional
        Called with every message (the live line).
    queue_steps : int
        Steps that may wait for inference before the oldest are dropped (live sources; a file
        read faster than real time waits instead).
    stop : threading.Event, optional
        Set it to end the run cleanly from another thread.
    """
    stop = stop or threading.Event()
    stats = ListenStats()
    lossless = isinstance(source, FileSource) and not source.realtime
    queue: BoundedQueue[ModelInputs] = BoundedQueue(queue_steps, lossless=lossless)
    max_steps = None if duration is None else max(0, int(round(duration / 0.5)))
    worker = threading.Thread(
        target=_feature_loop,
        args=(source, features, queue, stop, max_steps, stats.errors),
        name="streammood-features",
        daemon=True,
    )
    worker.start()

    def tag(inputs: ModelInputs) -> MoodMessage | None:
        try:
            (msg,) = mood.push(inputs)
        except StreammoodError as exc:  # an invalid model output: this step only
            stats.rejected += 1
            if stats.rejected == 1:
                log.warning(
                    "step %d not published: %s (further ones only counted)", inputs.seq, exc
                )
            return None
        if publisher is not None:
            publisher.publish(msg)
        stats.steps += 1
        return msg

    try:
        while True:
            inputs = queue.get(timeout=0.5)
            if inputs is None:
                if not worker.is_alive() and len(queue) == 0:
                    break
                continue
            msg = tag(inputs)
            if publisher is not None and mood.source in getattr(publisher, "fenced", ()):
                raise ProducerFencedError(
                    f"source '{mood.source}': another producer session took it over; this "
                    f"listen (session {mood.session}) stops"
                )
            if msg is None:
                continue
            stats.dropped_steps = queue.dropped
            stats.gaps = mood.gaps
            src = source.stats
            stats.overflows, stats.dropped_blocks = src.overflows, src.dropped_blocks
            if publisher is not None:
                publisher.update_metrics(**stats.as_metrics())
            if on_message is not None:
                on_message(msg, stats)
    except KeyboardInterrupt:
        stop.set()
        worker.join(timeout=5.0)
        while (inputs := queue.get(timeout=0)) is not None:  # publish every completed step
            tag(inputs)
    finally:
        stop.set()
        worker.join(timeout=5.0)
        if not worker.is_alive():  # else it is stuck in the stage; it closes it on its way out
            features.close()
        mood.close()
    if stats.errors:
        raise stats.errors[0]
    return stats
