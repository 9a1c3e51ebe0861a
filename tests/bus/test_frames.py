import re
import time

import numpy as np
import pytest
import redis

from streammood.bus.codec import FrameError, decode_frame, encode_frame
from streammood.bus.frames import FramePublisher, FrameReader, decode_inputs, encode_inputs
from streammood.bus.keys import Keys
from streammood.features.extractor import ModelInputs
from streammood.layout import MFCC_FRAMES, N_LLD_STATS, N_MFCC

EMB_DIM = 656
EMBEDDER = "3f1c0a9e5b7d2c41"


def _frame(source: str, seq: int) -> bytes:
    return encode_frame({"source": source, "seq": seq, "t_start": seq / 2, "t_end": seq / 2 + .5},
                        {"x": np.full(3, seq, np.float32)})


def _inputs(seq: int = 3) -> ModelInputs:
    rng = np.random.default_rng(seq)
    return ModelInputs(
        seq, seq * 0.5, seq * 0.5 + 0.5,
        rng.standard_normal((MFCC_FRAMES, N_MFCC)).astype(np.float32),
        rng.standard_normal(N_LLD_STATS).astype(np.float32),
        rng.standard_normal(EMB_DIM).astype(np.float32),
    )


def _publish_frames(url, prefix, source, seqs, begin=False):
    with FramePublisher(url, prefix) as pub:
        if begin:
            pub.begin(source)
        for s in seqs:
            pub.publish(_frame(source, s), source)


def _drain(reader, until, timeout=5.0, ack=True):
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and not until(got):
        frames = reader.read()
        for f in frames:
            got.append(f)
            if ack:
                reader.ack(f)
    return got


# -- model inputs <-> frame -----------------------------------------------------------------

def test_model_inputs_round_trip_through_a_frame():
    item = _inputs()
    header, arrays = decode_frame(encode_inputs("s", item, EMBEDDER))
    assert (header["source"], header["embedder"]) == ("s", EMBEDDER)
    back = decode_inputs(header, arrays, EMBEDDER, EMB_DIM)
    assert isinstance(back, ModelInputs)
    assert (back.seq, back.t_start, back.t_end) == (item.seq, item.t_start, item.t_end)
    for name in ("mfcc", "lld", "emb"):
        np.testing.assert_array_equal(getattr(back, name), getattr(item, name))


@pytest.mark.parametrize(
    ("embedder", "arrays", "reason"),
    [
        ("someone-else", {}, "made with embedder 'someone-else'"),
        (EMBEDDER, {"mfcc": np.zeros((3, 3), np.float32)}, "mfcc has shape (3, 3)"),
        (EMBEDDER, {"emb": np.zeros(EMB_DIM - 1, np.float32)}, "emb has shape"),
        (EMBEDDER, {"lld": np.full(N_LLD_STATS, np.nan, np.float32)}, "lld holds NaN or inf"),
        (EMBEDDER, {"emb": None}, "lacks array 'emb'"),
    ],
)
def test_decode_inputs_rejects_frames_the_model_cannot_use(embedder, arrays, reason):
    item = _inputs()
    full = {"mfcc": item.mfcc, "lld": item.lld, "emb": item.emb, **arrays}
    full = {k: v for k, v in full.items() if v is not None}
    header, decoded = decode_frame(
        encode_frame({"source": "s", "seq": 3, "t_start": 1.5, "t_end": 2.0,
                      "embedder": embedder}, full)
    )
    with pytest.raises(FrameError, match=re.escape(reason)):
        decode_inputs(header, decoded, EMBEDDER, EMB_DIM)


# -- publishing -----------------------------------------------------------------------------

def test_frames_round_trip_and_begin_resets_the_source(redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    arrays = {"mfcc": np.arange(420, dtype=np.float32).reshape(21, 20)}
    frames = [encode_frame({"source": "cap", "seq": i, "t_start": i / 2, "t_end": i / 2 + .5},
                           arrays) for i in range(5)]
    pub = FramePublisher(url, prefix, maxlen=50)
    for f in frames:
        pub.publish(f, "cap")
    assert pub.flush(5.0)
    client.set(keys.cursor("cap"), "1-0")
    pub.begin("cap")
    pub.publish(frames[0], "cap")
    pub.close()
    entries = client.xrange(keys.frames_stream("cap"))
    assert [e[1][b"frame"] for e in entries] == frames[:1]
    assert client.get(keys.cursor("cap")) is None
    header, back = decode_frame(entries[0][1][b"frame"])
    assert header["seq"] == 0 and np.array_equal(back["mfcc"], arrays["mfcc"])
    assert client.smembers(keys.frame_sources) == {b"cap"}


def test_publish_goes_to_the_source_it_is_told_and_never_decodes(redis_namespace):
    """The publisher trusts its caller: the stream is the one named, whatever the bytes say
    (the reader is the one that checks a frame against its stream)."""
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    with FramePublisher(url, prefix) as pub:
        pub.publish(b"opaque bytes, not a frame", "told")
    assert [e[1][b"frame"] for e in client.xrange(keys.frames_stream("told"))] == [
        b"opaque bytes, not a frame"]
    assert client.smembers(keys.frame_sources) == {b"told"}


def test_publish_rejects_wrong_types(redis_namespace):
    url, prefix = redis_namespace
    with FramePublisher(url, prefix) as pub:
        with pytest.raises(TypeError):
            pub.publish("frame", "s")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            pub.publish(b"", "s")
        with pytest.raises(TypeError):
            pub.publish(_frame("s", 0))  # type: ignore[call-arg]  # the source is required


# -- reading --------------------------------------------------------------------------------

def test_frame_reader_reads_sources_in_order_and_rejects_malformed(redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    _publish_frames(url, prefix, "s1", range(5), begin=True)
    _publish_frames(url, prefix, "s2", range(3))
    client.xadd(keys.frames_stream("s1"), {"frame": b"SMFRgarbage"})
    client.xadd(keys.frames_stream("s1"), {"other": b"x"})
    client.xadd(keys.frames_stream("s2"), {"frame": _frame("s1", 99)})  # wrong stream
    _publish_frames(url, prefix, "s1", [5])
    reader = FrameReader(client, prefix, worker_id="w1", block_ms=50)
    got = _drain(reader, lambda g: len(g) >= 12)
    good = [f for f in got if f.error is None]
    assert reader.owned == {"s1", "s2"}
    assert [f.seq for f in good if f.source == "s1"] == [0, 1, 2, 3, 4, 5]
    assert [f.seq for f in good if f.source == "s2"] == [0, 1, 2]
    assert all(np.array_equal(f.arrays["x"], np.full(3, f.seq, np.float32)) for f in good)
    assert not any(f.replay for f in got)
    # rejected entries come back in stream order, with the reason, to be acknowledged
    assert [f.seq for f in got if f.source == "s1"] == [0, 1, 2, 3, 4, -1, -1, 5]
    rejected = [f for f in got if f.error is not None]
    assert reader.rejected == len(rejected) == 3
    reasons = " ".join(f.error for f in rejected)
    assert "no 'frame' field" in reasons and "in the stream of 's2'" in reasons
    reader.read()  # writes the cursors
    last_s1 = client.xrevrange(keys.frames_stream("s1"), count=1)[0][0]
    assert client.get(keys.cursor("s1")) == last_s1
    reader.close()
    assert client.get(keys.lease("s1")) is None


def test_cursor_never_passes_a_frame_in_hand_nor_moves_back(redis_namespace):
    """Acks out of order: the cursor follows the longest acknowledged prefix of the stream."""
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    _publish_frames(url, prefix, "s1", range(2), begin=True)
    client.xadd(keys.frames_stream("s1"), {"frame": b"junk"})
    _publish_frames(url, prefix, "s1", range(2, 4))
    reader = FrameReader(client, prefix, worker_id="w1", block_ms=50)
    got = _drain(reader, lambda g: len(g) >= 5, ack=False)
    ids = [f.entry_id for f in got]
    assert [f.seq for f in got] == [0, 1, -1, 2, 3]

    def cursor():
        reader.read()
        value = client.get(keys.cursor("s1"))
        return value.decode() if value else None

    reader.ack(got[2])  # the rejected entry first: frames 0 and 1 are still in hand
    assert cursor() is None
    reader.ack(got[0])
    assert cursor() == ids[0]
    reader.ack(got[4])
    reader.ack(got[1])  # 0, 1 and the rejected entry are done; frame 2 is not
    assert cursor() == ids[2]
    reader.ack(got[1])  # acknowledging again does not move it back
    assert cursor() == ids[2]
    reader.ack(got[3])
    assert cursor() == ids[4]
    reader.close()


def test_takeover_replays_warmup_frames_then_continues(redis_namespace):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    _publish_frames(url, prefix, "s1", range(10), begin=True)
    first = FrameReader(client, prefix, worker_id="w1", block_ms=50, warmup=4)
    got = _drain(first, lambda g: len(g) >= 10)
    assert [f.seq for f in got] == list(range(10))
    first.close()  # hands s1 back (cursor at seq 9)
    _publish_frames(url, prefix, "s1", range(10, 13))
    second = FrameReader(client, prefix, worker_id="w2", block_ms=50, warmup=4)
    got = _drain(second, lambda g: len(g) >= 7)
    assert [(f.seq, f.replay) for f in got] == [
        (6, True), (7, True), (8, True), (9, True), (10, False), (11, False), (12, False)]
    second.close()


def test_two_workers_split_sources_and_a_lost_lease_is_reported(redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    for s in ("s1", "s2", "s3", "s4"):
        _publish_frames(url, prefix, s, range(2), begin=True)
    a = FrameReader(client, prefix, worker_id="wa", block_ms=20, lease_ms=600)
    b = FrameReader(client, prefix, worker_id="wb", block_ms=20, lease_ms=600)
    end = time.monotonic() + 10
    while time.monotonic() < end and not (len(a.owned) == 2 and len(b.owned) == 2):
        a.read()
        b.read()
    assert len(a.owned) == 2 and len(b.owned) == 2 and not (a.owned & b.owned)
    # the first worker claimed all four, then handed the excess over when the second appeared
    assert a.released() == b.owned
    # another worker steals a lease: the owner notices at its next renewal
    stolen = sorted(a.owned)[0]
    client.set(keys.lease(stolen), "thief", px=60_000)
    end = time.monotonic() + 5
    lost: set = set()
    while time.monotonic() < end and not lost:
        a.read()
        lost |= a.released()
    assert lost == {stolen} and stolen not in a.owned
    a.close()
    b.close()


_MEMORY_PROBE = """
import json, resource, sys, time
import redis
from streammood.bus.frames import FrameReader
url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = redis.Redis.from_url(url, socket_timeout=30)
reader = FrameReader(client, prefix, worker_id="probe", block_ms=100)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
got, end = [], time.monotonic() + 60
while len(got) < n and time.monotonic() < end:
    for f in reader.read():
        got.append(f)
        reader.ack(f)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reader.close()
print(json.dumps({"before_kb": before, "after_kb": after,
                  "seqs": [f.seq for f in got], "errors": [f.error for f in got]}))
"""


@pytest.mark.slow
def test_huge_entries_are_measured_in_redis_and_never_downloaded(redis_server):
    """Eight 40 MB entries between real frames: the reader rejects each by its size, read in
    Redis, and its peak memory does not grow by their size (it grew by 761 MB with 70 MB ones)."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    client = redis.Redis.from_url(redis_server.url)
    keys = Keys("huge")
    stream = keys.frames_stream("big")
    client.sadd(keys.frame_sources, "big")
    client.xadd(stream, {"frame": _frame("big", 0)})
    blob = b"SMFR" + bytes(40 << 20)
    for _ in range(8):
        client.xadd(stream, {"frame": blob})
    client.xadd(stream, {"frame": _frame("big", 1)})
    del blob
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, redis_server.url, "huge", "10"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["seqs"] == [0] + [-1] * 8 + [1]
    assert all("not downloaded" in e for e in out["errors"][1:9])
    growth_mb = (out["after_kb"] - out["before_kb"]) / 1024
    assert growth_mb < 30, f"peak RSS grew by {growth_mb:.0f} MB"
    assert client.get(keys.cursor("big")) is not None  # the cursor passed them all
