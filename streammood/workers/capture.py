"""``capture``: audio → model inputs → feature frames on a Redis stream (the first half of
``listen``, for running capture and inference on different machines)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from streammood.audio.sources import AudioSource
from streammood.bus.frames import FramePublisher, encode_inputs
from streammood.bus.sessions import ProducerFencedError, ProducerSession
from streammood.features.extractor import ModelInputs
from streammood.stage import Stage


def run_capture(
    source: AudioSource,
    features: Stage[np.ndarray, ModelInputs],
    embedder_id: str,
    source_id: str,
    publisher: FramePublisher,
    *,
    duration: float | None = None,
    on_frame: Callable[[ModelInputs], None] | None = None,
    stop: threading.Event | None = None,
    session: ProducerSession | None = None,
) -> int:
    """Publish one frame per 500 ms step of ``source`` until it ends, ``duration`` seconds have
    been captured, ``stop`` is set or Ctrl-C. Returns the number of frames published.

    The frames carry MFCC, LLD statistics and the pretrained embedding, computed here by
    ``features`` (:func:`~streammood.workers.tagging.feature_stage`); ``embedder_id`` (the
    artifact's :attr:`~streammood.runtime.artifact.ModelArtifact.embedder_id`) goes in each
    header so ``infer`` can check it. The source and the stage are closed on the way out.

    With a producer ``session`` (:func:`~streammood.bus.sessions.open_session`) the frames
    continue the source's stream — ``seq`` from ``session.seq0``, stream time from
    ``session.t0`` — carry the session id and go through its fence; without one the source's
    old frames and cursor are deleted first (a fresh stream from ``seq`` 0).

    Raises
    ------
    ProducerFencedError
        Another producer session took the source over (this one's frames are refused).
    """
    stop = stop or threading.Event()
    max_steps = None if duration is None else max(0, int(round(duration / 0.5)))
    if session is None:
        publisher.begin(source_id)
    else:
        publisher.bind(session)
    seq0, t0 = (0, 0.0) if session is None else (session.seq0, session.t0)
    sent = 0

    def send(batch: list[ModelInputs]) -> bool:
        nonlocal sent
        for inputs in batch:
            if max_steps is not None and sent >= max_steps:
                return False
            if source_id in publisher.fenced:
                raise ProducerFencedError(
                    f"source '{source_id}': another producer session took it over; this "
                    f"capture (session {session.session if session else '?'}) stops"
                )
            if session is not None:
                inputs = replace(
                    inputs,
                    seq=inputs.seq + seq0,
                    t_start=inputs.t_start + t0,
                    t_end=inputs.t_end + t0,
                )
            frame = encode_inputs(
                source_id, inputs, embedder_id, None if session is None else session.session
            )
            publisher.publish(frame, source_id, seq=inputs.seq, t_end=inputs.t_end)
            sent += 1
            if on_frame is not None:
                on_frame(inputs)
        return max_steps is None or sent < max_steps

    try:
        for block in source:
            stamp = getattr(source, "captured_at", None)
            if not send(features.push(block, captured_at=stamp)) or stop.is_set():
                break
        else:
            send(features.finish())
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
        features.close()
        publisher.update_metrics(
            frames=sent,
            audio_overflows=source.stats.overflows,
            audio_dropped_blocks=source.stats.dropped_blocks,
        )
    return sent
