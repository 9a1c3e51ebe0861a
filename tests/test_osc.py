"""The OSC bridge: the pure mapping and smoothing, then moods on a real Redis forwarded to a real
python-osc UDP server on loopback, message by message (in process and through the CLI)."""

from __future__ import annotations

import math
import queue
import subprocess
import sys
import threading

import pytest
import redis

from streammood.osc import OscMapper, OscTargetError, Smoother, osc_messages, parse_target
from tests.conftest import ROOT
from tests.dashboard.feed import mood, publish, subscribers, wait_for


def test_parse_target():
    assert parse_target("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_target("lights.local:57120") == ("lights.local", 57120)
    assert parse_target("[::1]:8000") == ("::1", 8000)
    for bad in ("127.0.0.1", ":9000", "host:", "host:0", "host:70000", "host:port"):
        with pytest.raises(OscTargetError, match="HOST:PORT"):
            parse_target(bad)


def test_one_mood_becomes_four_messages():
    m = mood("radio1", 3, 0.25, -0.5, "PP")
    assert osc_messages(m) == [
        ("/streammood/radio1/valence", [0.25]),
        ("/streammood/radio1/arousal", [-0.5]),
        ("/streammood/radio1/quadrant", ["PP"]),
        ("/streammood/radio1/probs", [0.1, 0.1, 0.7, 0.1]),  # AP AN PP PN
    ]


def test_segment_message_only_on_a_change_and_sources_filtered():
    mapper = OscMapper(sources=["a"])
    seg = [0.0, 0.0, 12.5, 12.5, 30.0]
    out = [mapper.map(mood("a", i, 0.1, 0.1, segment_start=s)) for i, s in enumerate(seg)]
    segments = [[args for addr, args in msgs if addr.endswith("/segment")] for msgs in out]
    assert segments == [[], [], [[12.5]], [], [[30.0]]]
    assert out[2][-1] == ("/streammood/a/segment", [12.5])  # after the four others
    assert mapper.map(mood("b", 0, 0.1, 0.1)) == []
    assert len(OscMapper().map(mood("b", 0, 0.1, 0.1))) == 4  # no filter: every source
    assert all(len(m) == 4 for m in map(OscMapper().map, [mood("c", i, 0.1, 0.1)
                                                           for i in range(3)]))  # no field


def test_smoothing_is_an_exponential_average_in_stream_time():
    tau = 2.0
    s = Smoother(tau)
    first = s.update(mood("a", 0, -0.8, -0.8, "PN"))
    assert first["valence"] == -0.8 and first["quadrant"] == "PN"  # starts at the first value
    out = [s.update(mood("a", i, 0.8, 0.8, "AP")) for i in range(1, 9)]  # a step, 4 s
    expected = 0.8 - 1.6 * math.exp(-0.5 / tau)
    assert out[0]["valence"] == pytest.approx(expected)
    assert out[3]["arousal"] == pytest.approx(0.8 - 1.6 * math.exp(-2.0 / tau))  # one tau
    assert out[0]["quadrant"] == "PN" and out[-1]["quadrant"] == "AP"  # drifts, then flips
    for o in out:
        assert sum(o["probs"].values()) == pytest.approx(1.0)
        assert o["quadrant"] == max(o["probs"], key=o["probs"].get)
    again = s.update(mood("a", 0, -0.8, -0.8, "PN"))  # stream time went back: new session
    assert again["valence"] == -0.8
    raw = mood("a", 5, 0.3, 0.2)
    assert Smoother(0).update(raw) == raw
    with pytest.raises(ValueError):
        Smoother(-1)


class OscReceiver:
    """A real python-osc UDP server on loopback collecting ``(address, args)``."""

    def __init__(self) -> None:
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        self.got: queue.Queue[tuple[str, list]] = queue.Queue()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda addr, *args: self.got.put((addr, list(args))))
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, n: int, timeout: float = 10.0) -> list[tuple[str, list]]:
        return [self.got.get(timeout=timeout) for _ in range(n)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    r = OscReceiver()
    yield r
    r.close()


def _approx(messages):
    return [(a, [pytest.approx(x, rel=1e-6) if isinstance(x, float) else x for x in args])
            for a, args in messages]


def test_bridge_forwards_every_mood_message_by_message(redis_namespace, receiver):
    from streammood.osc import run_bridge

    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    stop = threading.Event()
    result = {}
    bridge = threading.Thread(
        target=lambda: result.update(stats=run_bridge(
            url, prefix, ("127.0.0.1", receiver.port), stop=stop)),
        daemon=True,
    )
    bridge.start()
    try:
        wait_for(lambda: subscribers(client, prefix) == 1, what="the bridge's subscription")
        moods = [mood("radio1", 0, 0.5, 0.25, "AP", segment_start=0.0),
                 mood("radio2", 0, -0.5, -0.25, "PN"),
                 mood("radio1", 1, -0.1, 0.6, "AN", segment_start=0.5)]
        publish(client, prefix, moods)
        got = receiver.take(13)
        assert got == _approx(osc_messages(moods[0]) + osc_messages(moods[1])
                              + osc_messages(moods[2], segment_changed=True))
        assert got[-1] == ("/streammood/radio1/segment", [0.5])
        assert receiver.got.empty()
    finally:
        stop.set()
        bridge.join(10)
    assert result["stats"].moods == 3 and result["stats"].sent == 13
    client.close()


def test_cli_forwards_the_chosen_source_smoothed(redis_namespace, receiver):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammood", "osc", "--target", f"127.0.0.1:{receiver.port}",
         "--source", "radio1", "--smooth", "1", "--count", "2", "--redis-url", url,
         "--prefix", prefix],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: subscribers(client, prefix) == 1, 30, what="the CLI's subscription")
        publish(client, prefix, [mood("radio2", 0, 0.9, 0.9), mood("radio1", 0, -0.5, -0.5),
                                 mood("radio1", 1, 0.5, 0.5)])
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    got = receiver.take(8)
    assert {a.split("/")[2] for a, _ in got} == {"radio1"}
    alpha = 1 - math.exp(-0.5 / 1.0)
    assert got[4] == ("/streammood/radio1/valence", [pytest.approx(-0.5 + alpha, rel=1e-6)])
    assert "forwarding moods" in err and "2 moods forwarded, 8 OSC messages" in err
    client.close()
