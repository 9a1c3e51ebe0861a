"""Fixtures of the worker tests: real model inputs of real music, and hand-made frames that a
foreign or broken producer could write."""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable

import numpy as np
import pytest
import redis

from streammood.bus.codec import FRAME_MAGIC
from streammood.bus.keys import Keys
from streammood.bus.schema import MoodMessage
from streammood.features.extractor import ModelInputs


@pytest.fixture(scope="session")
def real_inputs(music_clip, shipped_model) -> list[ModelInputs]:
    """Every step of the first 30 s of a real clip through the live feature stage (60 steps)."""
    from streammood.audio.decode import load_audio
    from streammood.features.extractor import extract_stream

    y, sr = load_audio(music_clip)
    return list(extract_stream([y[: 30 * sr]], sr, shipped_model.embedder()).steps())


def raw_frame(header: dict, arrays: dict[str, np.ndarray], *, schema: str = "1") -> bytes:
    """A frame in the wire layout with *any* header (no validation: what a foreign writer
    could put on the stream)."""
    specs = [{"name": k, "shape": list(np.shape(v)), "dtype": "<f4"} for k, v in arrays.items()]
    head = json.dumps({"schema": schema, **header, "arrays": specs}).encode()
    payload = b"".join(np.ascontiguousarray(v, "<f4").tobytes() for v in arrays.values())
    return FRAME_MAGIC + struct.pack("<I", len(head)) + head + payload


def inputs_arrays(inputs: ModelInputs) -> dict[str, np.ndarray]:
    return {"mfcc": inputs.mfcc, "lld": inputs.lld, "emb": inputs.emb}


def history(client: redis.Redis, prefix: str, source: str) -> list[MoodMessage]:
    """The mood history stream of ``source``, oldest first."""
    return [
        MoodMessage.from_json(f[b"json"])
        for _, f in client.xrange(Keys(prefix).mood_stream(source))
    ]


def fields(msg: MoodMessage) -> dict:
    """A message without what differs between runs (wall clocks, producer session)."""
    d = msg.to_dict()
    for k in ("emitted_at", "captured_at", "session"):
        d.pop(k, None)
    return d


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` s pass; returns whether it held."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


class WorkerThread(threading.Thread):
    """``run_infer`` in a thread, with its result or exception kept."""

    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
