"""The least-privilege ACL of docs/operations.md, on a real redis-server: a user made by exactly
that line runs capture, infer, subscribe and listen without a refused command, and its password
never shows."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from streammood.bus.keys import Keys
from tests.bus.conftest import RedisServer, free_port
from tests.conftest import ROOT

SYSTEM_REDIS = "/usr/bin/redis-server"  # Redis 7 (ACL channel patterns, script ACL checks)
PASSWORD = "acl-s3cret-pw"


def _acl_line() -> list[str]:
    """The ``ACL SETUSER`` arguments documented in docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    line = next(ln for ln in text.splitlines() if "redis-cli ACL SETUSER streammood" in ln)
    return shlex.split(line.split("redis-cli", 1)[1])


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streammood", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streammood", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture()
def acl_redis(tmp_path: Path):
    if not Path(SYSTEM_REDIS).is_file():
        pytest.skip(f"{SYSTEM_REDIS} not installed")
    server = RedisServer(free_port(), tmp_path, binary=SYSTEM_REDIS)
    server.start()
    admin = redis.Redis(port=server.port)
    args = [a.replace("PASSWORD", PASSWORD) for a in _acl_line()]
    assert args[:3] == ["ACL", "SETUSER", "streammood"]
    admin.execute_command(*args)
    yield server, f"redis://streammood:{PASSWORD}@127.0.0.1:{server.port}/0", admin
    server.stop()


def test_the_documented_user_cannot_touch_other_keys(acl_redis):
    _, url, _ = acl_redis
    client = redis.Redis.from_url(url)
    assert client.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("other:key", 1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.keys("*")


@pytest.mark.slow
def test_every_command_runs_as_the_least_privileged_user(acl_redis, music_clip):
    server, url, admin = acl_redis
    keys = Keys("streammood")
    admin.execute_command("ACL", "LOG", "RESET")
    # capture and listen side by side, then infer, then subscribe with its history
    producers = [
        _start("capture", "--file", str(music_clip), "--duration", "3", "--source-id", "cap",
               "--redis-url", url),
        _start("listen", "--file", str(music_clip), "--duration", "2", "--source-id", "lis",
               "--redis-url", url, "-q"),
    ]
    runs = [_finish(p) for p in producers]
    runs.append(_cli("infer", "--redis-url", url, "--count", "6", "--idle-timeout", "5", "-q"))
    runs.append(_cli("subscribe", "--redis-url", url, "--history", "6", "--count", "6",
                     "--source", "cap"))
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
        assert PASSWORD not in run.stdout + run.stderr
        assert "NOPERM" not in run.stderr and "no permissions" not in run.stderr
    assert len(runs[3].stdout.splitlines()) == 6
    assert admin.xlen(keys.mood_stream("cap")) == 6 and admin.xlen(keys.mood_stream("lis")) == 4
    refused = admin.execute_command("ACL", "LOG")
    # redis-py announces itself with CLIENT SETINFO on connect; the refusal is ignored by it
    others = [e for e in refused if not re.search(rb"client\|setinfo", _entry(e))]
    assert others == [], others


def _entry(entry: dict) -> bytes:
    """The refused command of one ``ACL LOG`` entry."""
    return entry.get(b"object") or entry.get("object", "").encode()
