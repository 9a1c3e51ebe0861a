import pytest

from streammood.bus.connection import (
    ENV_REDIS_URL,
    RedisUnavailableError,
    connect,
    describe_client,
    redact_url,
    resolve_redis_url,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://alice:s3cret@cache:6379/2", "redis://alice:***@cache:6379/2"),
        ("rediss://:p%40ss@cache.example:6380/1", "rediss://:***@cache.example:6380/1"),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://alice@cache", "redis://alice@cache"),
    ],
)
def test_redact_url_hides_passwords(url, shown):
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_resolution_order(monkeypatch):
    monkeypatch.delenv(ENV_REDIS_URL, raising=False)
    assert resolve_redis_url(None) is None
    monkeypatch.setenv(ENV_REDIS_URL, "redis://env:6379/0")
    assert resolve_redis_url(None) == "redis://env:6379/0"
    assert resolve_redis_url("redis://cli:6379/0") == "redis://cli:6379/0"
    monkeypatch.setenv(ENV_REDIS_URL, "")
    assert resolve_redis_url(None) is None


def test_unreachable_server_is_a_one_line_error_without_the_password():
    with pytest.raises(RedisUnavailableError) as info:
        connect("redis://:s3cret@127.0.0.1:1/0", timeout=0.5)
    text = str(info.value)
    assert "s3cret" not in text and "redis://:***@127.0.0.1:1/0" in text
    assert "\n" not in text


@pytest.mark.parametrize("url", ["http://x:1", "127.0.0.1:6379", "redis://h:notaport/0"])
def test_invalid_urls_are_refused(url):
    with pytest.raises(RedisUnavailableError, match="Redis"):
        connect(url, timeout=0.5)


def test_wrong_password_is_reported(redis_server):
    client = connect(redis_server.url)
    client.config_set("requirepass", "right-one")
    try:
        with pytest.raises(RedisUnavailableError) as info:
            connect(f"redis://:wrong-one@127.0.0.1:{redis_server.port}/0")
        assert "wrong-one" not in str(info.value)
        good = connect(f"redis://:right-one@127.0.0.1:{redis_server.port}/3")
        assert good.ping() and good.connection_pool.connection_kwargs["db"] == 3
        assert "right-one" not in describe_client(good)
    finally:
        connect(f"redis://:right-one@127.0.0.1:{redis_server.port}/0").config_set("requirepass", "")


def test_unix_socket_url(redis_server, tmp_path):
    sock = tmp_path / "r.sock"
    client = connect(redis_server.url)
    # a second server listening on a socket only
    import subprocess
    import time

    from streammood.bus.embedded import redis_server_binary

    proc = subprocess.Popen([redis_server_binary(), "--port", "0", "--unixsocket", str(sock),
                             "--save", "", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.02)
        unix = connect(f"unix://{sock}?db=2")
        assert unix.ping()
        assert describe_client(unix) == f"unix://{sock}?db=2"
    finally:
        proc.kill()
        proc.wait()
    client.close()


def test_real_server_at_default_address(redis_namespace):
    url, _ = redis_namespace
    assert connect(url).ping()
