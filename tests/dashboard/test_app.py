"""The dashboard server over real HTTP and a real Redis (no browser): the documented endpoints,
the SSE feed carrying each message exactly as published, one Redis subscription for every
client, a stalled client that slows nobody, the token, and the CLI's warning."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys

import pytest
import redis

from streammood.dashboard.app import STATIC_DIR
from streammood.dashboard.server import dashboard_url, exposure_warning, is_loopback
from tests.conftest import ROOT
from tests.dashboard.feed import (
    SSEClient,
    free_port,
    mood,
    moods_line,
    publish,
    run_dashboard,
    subscribers,
    text,
    wait_for,
)


@pytest.fixture()
def env(redis_namespace):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    with run_dashboard(url, prefix) as dash:
        wait_for(lambda: dash.hub.stats.redis_up, what="the hub's subscription")
        yield dash, client, prefix
    client.close()


def test_the_page_and_every_asset_come_from_the_package():
    names = sorted(p.name for p in STATIC_DIR.iterdir())
    assert {"index.html", "dashboard.js", "dashboard.css", "favicon.svg"} <= set(names)
    for path in STATIC_DIR.iterdir():
        body = path.read_text(encoding="utf-8")
        external = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", body)
                    if "www.w3.org/2000/svg" not in u]
        assert not external, f"{path.name} refers to {external} (no CDN: everything offline)"


def test_page_assets_and_json_endpoints(env):
    dash, client, prefix = env
    page = dash.get("/")
    html = page.read().decode()
    assert page.status == 200 and 'id="source-card"' in html
    assert page.getheader("content-security-policy").startswith("default-src 'self'")
    for asset in re.findall(r'(?:href|src)="(static/[^"]+)"', html):
        resp = dash.get("/" + asset)
        assert resp.status == 200, asset
        assert resp.read() == (STATIC_DIR / asset.removeprefix("static/")).read_bytes()

    assert dash.json("/api/sources") == {"sources": []}
    sent = publish(client, prefix, moods_line(5, "radio1", 0, "AP", segment_start=0.0))
    client.hset(f"{prefix}:metrics:radio1", mapping={"audio_overflows": 2, "updated_at": 1.5})
    assert dash.json("/api/sources") == {
        "sources": [{"source": "radio1", "metrics": {"audio_overflows": 2.0, "updated_at": 1.5}}]
    }
    history = dash.get("/api/history/radio1?n=3")
    assert history.status == 200 and history.getheader("content-type") == "application/json"
    assert history.read().decode() == "[" + ",".join(sent[2:]) + "]"  # as published, in order
    assert len(dash.json("/api/history/radio1")) == 5  # default: the last 10 minutes
    assert dash.json("/api/history/nobody?n=10") == []
    for bad in ("/api/history/bad:id", "/api/history/radio1?n=-1", "/api/history/radio1?n=x",
                "/api/history/radio1?n=999999", "/events?source=bad:id"):
        assert dash.get(bad).status == 400, bad
    status = dash.json("/api/status")
    assert status["redis"] == "up" and status["epoch"] == 1 and status["prefix"] == prefix


def test_events_carry_each_message_as_published_from_one_subscription(env):
    dash, client, prefix = env
    every, every2 = SSEClient(dash.port), SSEClient(dash.port)
    only2 = SSEClient(dash.port, "/events?source=radio2")
    assert every.status == 200 and every.content_type.startswith("text/event-stream")
    wait_for(lambda: dash.hub.stats.clients == 3, what="three clients")
    assert subscribers(client, prefix) == 1  # one Redis subscription, shared
    moods = [mood("radio1", 0, 0.5, 0.5, captured_at=1.7e9, future_field=[1, 2]),
             mood("radio2", 0, -0.5, -0.5), mood("radio1", 1, 0.4, 0.5)]
    client.publish(f"{prefix}:mood", "not a mood")  # malformed: skipped, logged
    client.publish(f"{prefix}:mood", text({**moods[0], "arousal": 7}))
    sent = publish(client, prefix, moods)
    assert every.take(3) == sent
    assert every2.take(3) == sent
    assert only2.next() == sent[1]
    for c in (every, every2, only2):
        c.close()
    wait_for(lambda: dash.hub.stats.clients == 0, what="the clients to be forgotten")
    assert subscribers(client, prefix) == 1


def test_a_stalled_client_slows_nobody(redis_namespace):
    """One client connects and never reads; another reads everything in lockstep with the
    publisher. The stalled one's socket buffers fill, then its queue, and it is cut off; the
    reader gets every message in order."""
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    with run_dashboard(url, prefix, queue_size=32) as dash:
        wait_for(lambda: dash.hub.stats.redis_up, what="the hub's subscription")
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", dash.port))
        stalled.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = SSEClient(dash.port)
        wait_for(lambda: dash.hub.stats.clients == 2, what="two clients")
        pad = "x" * 4000  # unknown fields pass through: big messages fill buffers sooner
        seq = 0
        while dash.hub.stats.clients_cut_off == 0:
            assert seq < 20_000, "the stalled client was never cut off"
            sent = publish(client, prefix, [mood("r", seq + i, 0.1, 0.1, pad=pad)
                                            for i in range(20)], history=False)
            assert reader.take(20) == sent
            seq += 20
        assert dash.hub.stats.clients == 1
        sent = publish(client, prefix, [mood("r", seq, 0.1, 0.1)], history=False)
        assert reader.take(1) == sent
        reader.close()
        stalled.close()
    client.close()


def test_the_token_guards_page_api_and_feed(redis_namespace):
    url, prefix = redis_namespace
    with run_dashboard(url, prefix, token="s3cret") as dash:
        for path in ("/", "/api/sources", "/api/status", "/events", "/static/dashboard.js"):
            assert dash.get(path).status == 401, path
        assert dash.get("/api/status?token=wrong").status == 401
        first = dash.get("/?token=s3cret")
        assert first.status == 303 and first.getheader("location") == "./"
        cookie = first.getheader("set-cookie")
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        jar = {"Cookie": cookie.split(";")[0]}
        assert dash.get("/", jar).status == 200
        assert dash.get("/api/status", {"Authorization": "Bearer s3cret"}).status == 200
        feed = SSEClient(dash.port, "/events", jar)
        assert feed.status == 200
        feed.close()


def test_redis_away_is_reported_not_fatal(tmp_path):
    with run_dashboard(f"redis://127.0.0.1:{free_port()}/0", "p") as dash:
        assert dash.json("/api/status")["redis"] == "away"
        assert dash.get("/api/sources").status == 503
        assert dash.get("/api/history/radio1").status == 503
        assert dash.get("/").status == 200


def test_loopback_by_default_and_a_warning_elsewhere():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    assert exposure_warning("127.0.0.1", None) is None
    assert "every network interface without a token" in exposure_warning("0.0.0.0", None)
    assert "who has the token" in exposure_warning("0.0.0.0", "t")
    assert dashboard_url("0.0.0.0", 8765) == "http://127.0.0.1:8765/"
    assert dashboard_url("::1", 80, "t") == "http://[::1]:80/?token=t"


def test_cli_serves_and_warns_on_all_interfaces(redis_namespace):
    url, prefix = redis_namespace
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammood", "dashboard", "--host", "0.0.0.0", "--port",
         str(port), "--redis-url", url.replace("redis://", "redis://:hunter2@"), "--prefix",
         prefix],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        while not lines or "dashboard at" not in lines[-1]:
            line = proc.stderr.readline()
            assert line, f"the dashboard ended: {''.join(lines)}"
            lines.append(line)
        out = "".join(lines)
        assert "warning: the dashboard listens on every network interface" in out
        assert f"dashboard at http://127.0.0.1:{port}/" in out
        assert "hunter2" not in out  # the Redis password never shows
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/status")
        assert json.loads(conn.getresponse().read())["prefix"] == prefix
    finally:
        proc.terminate()
        proc.wait(10)


def test_demo_starts_the_dashboard_and_prints_its_url(redis_namespace, capsys):
    from streammood.demo import start_dashboard

    url, _ = redis_namespace
    env = {**os.environ, "STREAMMOOD_REDIS_URL": url}
    proc, page = start_dashboard([sys.executable, "-m", "streammood"], env)
    try:
        assert page is not None and page.startswith("http://127.0.0.1:")
        assert f"demo: open {page} in a browser" in capsys.readouterr().out
        port = int(page.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_serving_never_imports_tensorflow():
    code = ("import sys, streammood.cli, streammood.dashboard.app, streammood.dashboard.server, "
            "streammood.osc; from streammood.dashboard.app import create_app; "
            "create_app('redis://127.0.0.1:1/0', 'p'); "
            "bad = [m for m in ('tensorflow', 'keras', 'librosa') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr + run.stdout
