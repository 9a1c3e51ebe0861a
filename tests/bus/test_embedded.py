import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streammood.bus.connection import ENV_REDIS_URL, RedisUnavailableError
from streammood.bus.embedded import (
    ENV_DEFAULT_URL,
    ENV_STATE_DIR,
    EmbeddedRedisError,
    ensure_redis,
    read_state,
    state_file,
)
from streammood.bus.moods import MoodPublisher
from tests.bus.conftest import free_port, make_message

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    """No configured URL, a default address where nothing listens, a private state dir."""
    monkeypatch.delenv(ENV_REDIS_URL, raising=False)
    monkeypatch.setenv(ENV_DEFAULT_URL, f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv(ENV_STATE_DIR, str(tmp_path / "state"))
    return tmp_path / "state"


def test_configured_url_wins_and_must_be_reachable(monkeypatch, redis_server):
    monkeypatch.setenv(ENV_REDIS_URL, redis_server.url)
    endpoint = ensure_redis(None)
    assert (endpoint.url, endpoint.origin, endpoint.embedded) == (redis_server.url, "configured",
                                                                  False)
    with pytest.raises(RedisUnavailableError, match="127.0.0.1:1"):
        ensure_redis("redis://:pw@127.0.0.1:1/0", start=True)


def test_default_address_is_used_when_reachable(monkeypatch, redis_server):
    monkeypatch.delenv(ENV_REDIS_URL, raising=False)
    monkeypatch.setenv(ENV_DEFAULT_URL, redis_server.url)
    assert ensure_redis(None, start=True).origin == "default"


def test_nothing_found_without_start_is_a_clear_error(isolated):
    with pytest.raises(EmbeddedRedisError, match="no Redis server found"):
        ensure_redis(None)


def test_embedded_server_is_found_by_a_subscriber_in_another_process(isolated):
    endpoint = ensure_redis(None, start=True)
    try:
        assert endpoint.origin == "started" and endpoint.embedded
        assert "started an embedded Redis server at redis://127.0.0.1:" in endpoint.describe()
        state = json.loads(state_file().read_text())
        assert state["url"] == endpoint.url and state["owner_pid"] == os.getpid()
        assert read_state() is not None
        again = ensure_redis(None, start=True)  # a second listener reuses it
        assert (again.origin, again.url) == ("embedded", endpoint.url)

        sub = subprocess.Popen(
            [sys.executable, "-m", "streammood", "subscribe", "--count", "1", "--json"],
            cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        with MoodPublisher(endpoint.url) as pub:
            deadline = time.monotonic() + 30
            while sub.poll() is None and time.monotonic() < deadline:
                pub.publish(make_message("embedded", 1))
                time.sleep(0.2)
        out, err = sub.communicate(timeout=10)
        assert sub.returncode == 0, err
        assert json.loads(out.splitlines()[0])["source"] == "embedded"
        assert "using the embedded Redis server at " + endpoint.url in err
    finally:
        endpoint.close()
    assert not state_file().exists()
    with pytest.raises(EmbeddedRedisError):
        ensure_redis(None)


def test_stale_state_file_is_removed(isolated):
    isolated.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    state_file().write_text(json.dumps({"url": "redis://127.0.0.1:1/0", "pid": dead.pid}))
    assert read_state() is None
    assert not state_file().exists()
    state_file().write_text("{not json")
    assert read_state() is None and not state_file().exists()


def test_subscribe_cli_reports_unreachable_redis_without_password(isolated):
    result = subprocess.run(
        [sys.executable, "-m", "streammood", "subscribe", "--redis-url",
         "redis://:hunter2@127.0.0.1:1/0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "hunter2" not in result.stderr + result.stdout
    assert result.stderr.strip().count("\n") == 0 and "redis://:***@127.0.0.1:1/0" in result.stderr


def test_subscribe_cli_replays_history_with_prefix_and_source(redis_namespace):
    url, prefix = redis_namespace
    with MoodPublisher(url, prefix) as pub:
        for i in range(3):
            pub.publish(make_message("a", i))
        pub.publish(make_message("b", 0))
    result = subprocess.run(
        [sys.executable, "-m", "streammood", "subscribe", "--redis-url", url, "--prefix", prefix,
         "--source", "a", "--history", "2", "--count", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(" a " in line and "PP" in line for line in lines)
    assert "t=     1.0s" in lines[0] and "t=     1.5s" in lines[1]
