"""10 000 fuzzed entries on one source's frame stream — random bytes, truncations, bit flips,
wrong shapes, huge declared sizes, oversized entries, NaN and extreme values, deep JSON, wrong
schema, bad times, other sources, other embedders — while a good live source is served by the
same real `infer` process: it never dies, the good source loses nothing, every fuzzed entry is
either quarantined or a valid step, and its memory stays flat."""

from __future__ import annotations

import json
import struct
import threading
import time

import numpy as np
import pytest
import redis

from streammood.bus.codec import FRAME_MAGIC
from streammood.bus.frames import FramePublisher, encode_inputs
from streammood.bus.keys import Keys
from streammood.bus.sessions import close_session, open_session
from tests.faults.conftest import rss_mb, spawn, stop_all
from tests.workers.conftest import history, inputs_arrays, raw_frame, wait_until

N_FUZZ = 10_000


def _header_frame(head: str, payload: bytes = b"") -> bytes:
    raw = head.encode()
    return FRAME_MAGIC + struct.pack("<I", len(raw)) + raw + payload


def fuzzed(base_inputs, ident: str, n: int, seed: int = 7) -> list[dict[str, bytes]]:
    """``n`` stream entries for source ``fuzz``, a dozen kinds of damage in turn."""
    rng = np.random.default_rng(seed)
    good = encode_inputs("fuzz", base_inputs, ident)
    hdr = {"source": "fuzz", "seq": base_inputs.seq, "t_start": base_inputs.t_start,
           "t_end": base_inputs.t_end, "embedder": ident}
    arrays = inputs_arrays(base_inputs)
    out = []
    for i in range(n):
        kind = i % 12
        if i % 500 == 499:
            frame = FRAME_MAGIC + bytes(2 << 20)  # oversized: never downloaded
        elif kind == 0:
            frame = bytes(rng.integers(0, 256, rng.integers(1, 200), dtype=np.uint8))
        elif kind == 1:
            frame = good[: rng.integers(0, len(good))]
        elif kind == 2:
            data = bytearray(good)
            for pos in rng.integers(0, len(data), rng.integers(1, 9)):
                data[pos] ^= 1 << int(rng.integers(8))
            frame = bytes(data)
        elif kind == 3:
            frame = raw_frame(hdr, {**arrays, "mfcc": np.zeros((3, 3), np.float32)})
        elif kind == 4:
            spec = '[{"name":"mfcc","shape":[65536,65536],"dtype":"<f4"}]'
            frame = _header_frame(json.dumps(hdr)[:-1] + f',"schema":"1","arrays":{spec}}}',
                                  bytes(16))
        elif kind == 5:
            frame = raw_frame(hdr, {**arrays, "lld": np.full(260, np.nan, np.float32)})
        elif kind == 6:
            frame = raw_frame(hdr, {**arrays, "emb": np.full_like(arrays["emb"], 3e38)})
        elif kind == 7:
            depth = int(rng.integers(17, 30_000))
            frame = _header_frame('{"schema":"1","x":' + "[" * depth + "]" * depth + "}")
        elif kind == 8:
            frame = raw_frame(hdr, arrays, schema="9")
        elif kind == 9:
            frame = raw_frame({**hdr, "t_start": 5.0, "t_end": -1.0}, arrays)
        elif kind == 10:
            frame = raw_frame({**hdr, "source": "good"}, arrays)  # another source's frame
        else:
            frame = raw_frame({**hdr, "embedder": "0000000000000000"}, arrays)
        out.append({"frame": frame} if i % 997 else {"other": frame})
    return out


@pytest.mark.slow
def test_ten_thousand_fuzzed_frames_beside_a_good_source(private_redis, real_inputs,
                                                          shipped_model):
    url = private_redis.url
    keys = Keys("streammood")
    client = redis.Redis.from_url(url)
    ident = shipped_model.embedder_id
    worker = spawn("infer", "--redis-url", url, "-q", "--dead-letter-after", "0")
    try:
        assert wait_until(lambda: client.zcard(keys.workers) == 1, 90)
        session = open_session(client, "streammood", "good")
        frames = FramePublisher(url)
        frames.bind(session)

        def produce():
            for item in real_inputs:
                frames.publish(encode_inputs("good", item, ident, session.session), "good",
                               seq=item.seq, t_end=item.t_end)
                time.sleep(0.15)

        producer = threading.Thread(target=produce)
        producer.start()
        assert wait_until(lambda: client.xlen(keys.mood_stream("good")) >= 10, 60)
        before = rss_mb(worker.pid)
        entries = fuzzed(real_inputs[5], ident, N_FUZZ)
        client.sadd(keys.frame_sources, "fuzz")
        for start in range(0, N_FUZZ, 500):
            pipe = client.pipeline(transaction=False)
            for entry in entries[start : start + 500]:
                pipe.xadd(keys.frames_stream("fuzz"), entry)
            pipe.execute()
        del entries

        def handled() -> int:
            metrics = [client.hgetall(k) for k in client.scan_iter(f"{keys.prefix}:metrics:*")]
            rejected = sum(int(m.get(b"frames_rejected", 0)) for m in metrics)
            return rejected + client.xlen(keys.mood_stream("fuzz"))

        done = wait_until(lambda: handled() >= N_FUZZ, 120, step=0.5)
        producer.join(30)
        frames.close(timeout=10)
        close_session(client, "streammood", session)
        assert wait_until(lambda: client.xlen(keys.mood_stream("good")) >= len(real_inputs), 30)
        after = rss_mb(worker.pid)
        alive = worker.poll() is None
    finally:
        stop_all([worker])
    assert done and alive and worker.returncode == 0
    assert handled() == N_FUZZ
    good = history(client, "streammood", "good")
    assert [m.seq for m in good] == list(range(len(real_inputs)))
    growth = after - before
    print(f"infer RSS {before:.1f} -> {after:.1f} MiB (+{growth:.1f}) over {N_FUZZ} fuzzed "
          f"entries; {client.xlen(keys.mood_stream('fuzz'))} of them were valid steps")
    assert growth <= 20.0, f"RSS grew by {growth:.1f} MiB"
