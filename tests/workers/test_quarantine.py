"""No frame can stop the fleet: poison frames are quarantined (counted, logged once per source,
acknowledged), a source that sends nothing else is dead-lettered, every other source is served;
real model, real music, real Redis, two workers."""

from __future__ import annotations

import json
import logging
import struct
import threading

import numpy as np
import pytest
import redis

from streammood.bus.codec import FRAME_MAGIC
from streammood.bus.frames import FrameReader, encode_inputs
from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher
from streammood.features.extractor import ModelInputs
from streammood.workers.infer import run_infer
from streammood.workers.tagging import MoodStage
from tests.workers.conftest import (
    WorkerThread,
    fields,
    history,
    inputs_arrays,
    raw_frame,
    wait_until,
)

N = 40


def _deep_header_frame(source: str, seq: int) -> bytes:
    head = (
        f'{{"schema":"1","source":"{source}","seq":{seq},"t_start":1.0,"t_end":1.5,'
        f'"x":{"[" * 30_000}{"]" * 30_000},"arrays":[]}}'
    ).encode()
    return FRAME_MAGIC + struct.pack("<I", len(head)) + head


def _poison(source: str, item: ModelInputs, ident: str) -> list[dict[str, bytes]]:
    """Nine entries that cannot become a step, one of each kind."""
    good = {"source": source, "seq": item.seq, "t_start": item.t_start, "t_end": item.t_end,
            "embedder": ident}
    arrays = inputs_arrays(item)
    return [
        {"frame": raw_frame({**good, "t_start": -1.0}, arrays)},  # decodes, times out of range
        {"frame": raw_frame(good, {**arrays, "lld": np.full(260, 3e38, np.float32)})},
        {"frame": _deep_header_frame(source, item.seq)},  # RecursionError in the JSON parser
        {"frame": raw_frame({**good, "embedder": "someone-else"}, arrays)},
        {"frame": FRAME_MAGIC + bytes(2 << 20)},  # oversized: measured in Redis, not fetched
        {"other": b"no frame field"},
        {"frame": raw_frame(good, {**arrays, "emb": np.full(item.emb.shape, np.nan, np.float32)})},
        {"frame": b"garbage"},
        {"frame": raw_frame(good, {**arrays, "mfcc": np.zeros((3, 3), np.float32)})},
    ]


def test_poison_frames_are_quarantined_and_every_other_source_served(
    real_inputs, shipped_model, redis_namespace, caplog
):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    ident = shipped_model.embedder_id
    inputs = real_inputs[:N]
    client.sadd(keys.frame_sources, "good", "mixed", "poison")
    stop = threading.Event()
    readers = [
        # long leases: this test is about poison, not failover (a loaded machine must not move
        # a source between the workers mid-test, which would count its rejects twice)
        FrameReader(redis.Redis.from_url(url), prefix, worker_id=f"w{i}", block_ms=50,
                    lease_ms=10_000)
        for i in range(2)
    ]
    publishers = [MoodPublisher(url, prefix, metrics_id=f"w{i}") for i in range(2)]
    workers = [
        WorkerThread(
            lambda i=i: run_infer(
                readers[i].client, shipped_model, publishers[i], prefix=prefix,
                reader=readers[i], stop=stop, dead_letter_after=10,
            )
        )
        for i in range(2)
    ]
    with caplog.at_level(logging.WARNING):
        for w in workers:
            w.start()
        # the two workers split the three sources before any frame arrives
        assert wait_until(
            lambda: readers[0].owned | readers[1].owned == {"good", "mixed", "poison"}
            and not readers[0].owned & readers[1].owned,
            20,
        )
        pipe = client.pipeline()
        for item in inputs:
            pipe.xadd(keys.frames_stream("good"), {"frame": encode_inputs("good", item, ident)})
        for item in inputs[:20]:
            pipe.xadd(keys.frames_stream("mixed"), {"frame": encode_inputs("mixed", item, ident)})
        for entry in _poison("mixed", inputs[20], ident):
            pipe.xadd(keys.frames_stream("mixed"), entry)
        for item in inputs[20:]:
            pipe.xadd(keys.frames_stream("mixed"), {"frame": encode_inputs("mixed", item, ident)})
        for entry in _poison("poison", inputs[0], ident) + [{"frame": b"x"}] * 3:
            pipe.xadd(keys.frames_stream("poison"), entry)
        pipe.execute()
        served = wait_until(
            lambda: client.xlen(keys.mood_stream("good")) >= N
            and client.xlen(keys.mood_stream("mixed")) >= N
            and client.hexists(keys.dead_letter, "poison"),
            60,
        )
        alive = [w.is_alive() for w in workers]
        stop.set()
        for w in workers:
            w.join(20)
    for p in publishers:
        p.close(timeout=5)
    assert served and alive == [True, True]
    assert [w.error for w in workers] == [None, None]
    good, mixed = history(client, prefix, "good"), history(client, prefix, "mixed")
    assert [m.seq for m in good] == list(range(N))
    assert [m.seq for m in mixed] == list(range(N))
    # the quarantined frames left the model state untouched: same moods as the clean source
    assert [{**fields(m), "source": "x"} for m in mixed] == [
        {**fields(m), "source": "x"} for m in good
    ]
    assert client.xlen(keys.mood_stream("poison")) == 0
    stats = [w.result for w in workers]
    assert sum(s.rejected for s in stats) == 9 + 10  # 9 in mixed; poison dead after 10 in a row
    assert sorted(d for s in stats for d in s.dead_letter) == ["poison"]
    dead = json.loads(client.hget(keys.dead_letter, "poison"))
    assert dead["consecutive"] == 10 and dead["reason"]
    metrics = [client.hgetall(keys.metrics(f"w{i}")) for i in range(2)]
    assert sum(int(m[b"frames_rejected"]) for m in metrics) == 19
    assert sorted(m[b"dead_letter_sources"] for m in metrics) == [b"", b"poison"]
    assert sum(int(m[b"steps_published"]) for m in metrics) == 2 * N
    # logged once per source, with the reason
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("quarantined")]
    assert sorted(line.split(" of source ")[1].split(":")[0] for line in lines) == [
        "mixed", "poison"]
    assert any("0 <= t_start <= t_end" in line for line in lines)
    # a dead-lettered source is claimed by no worker
    assert all("poison" not in r.owned for r in readers)


def test_a_step_with_non_finite_output_is_an_error_and_the_window_starts_over(
    real_inputs, shipped_model
):
    """Inputs that drive the real model to NaN (3e38): that step raises OutputError, is never a
    message, and the stage goes on from a fresh window."""
    from streammood.runtime.checks import OutputError

    stage = MoodStage(shipped_model, "s")
    (first,) = stage.push(real_inputs[0])
    bad = real_inputs[1]
    huge = ModelInputs(bad.seq, bad.t_start, bad.t_end, np.full_like(bad.mfcc, 3e38),
                       np.full_like(bad.lld, 3e38), bad.emb)
    with pytest.raises(OutputError, match="not finite"):
        stage.push(huge)
    (after,) = stage.push(real_inputs[2])
    assert after.window_steps == 1  # started over
    fresh = MoodStage(shipped_model, "s")
    (alone,) = fresh.push(real_inputs[2])
    assert fields(after) == fields(alone)
