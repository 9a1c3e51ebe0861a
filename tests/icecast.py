"""A real Icecast server on a loopback port, fed by ``ffmpeg -re`` from a real clip: the network
stream the URL-source tests listen to (Debian packages ``icecast2`` and ``ffmpeg``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

PASSWORD = "streammood-test"
MOUNT = "/live.mp3"

_CONFIG = """<icecast>
  <location>loopback</location><admin>test@localhost</admin>
  <limits>
    <clients>32</clients><sources>4</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size>
  </limits>
  <authentication>
    <source-password>{password}</source-password><relay-password>{password}</relay-password>
    <admin-user>admin</admin-user><admin-password>{password}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>0</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir><logdir>{dir}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
    <pidfile>{dir}/icecast.pid</pidfile>
  </paths>
  <logging>
    <accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel>
  </logging>
  <security><chroot>0</chroot>{owner}</security>
</icecast>
"""


def available() -> str | None:
    """Why the Icecast tests cannot run here (None: they can)."""
    for exe in ("icecast2", "ffmpeg"):
        if shutil.which(exe) is None:
            return f"{exe} not installed (Debian packages icecast2 and ffmpeg)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Icecast:
    """Icecast on ``127.0.0.1:port`` with its own config and logs in ``folder``, and an
    ``ffmpeg -re`` source client looping ``clip`` into :data:`MOUNT` as 128 kb/s MP3.

    :meth:`start` starts both and waits until the mount serves audio; :meth:`stop` kills both
    (a dropped stream for every listener); they can be started again on the same port."""

    def __init__(self, folder: Path, clip: Path) -> None:
        self.folder = Path(folder)
        self.clip = Path(clip)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{MOUNT}"
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = ""
        if os.getuid() == 0:
            # icecast refuses to run as root: it changes to its own user, which must reach its
            # log folder (pytest's tmp_path is private to root)
            owner = "<changeowner><user>icecast2</user><group>icecast</group></changeowner>"
            self.folder = Path(tempfile.mkdtemp(prefix="streammood-icecast-"))
            os.chmod(self.folder, 0o755)
            shutil.chown(self.folder, "icecast2", "icecast")
        self.config = self.folder / "icecast.xml"
        self.config.write_text(
            _CONFIG.format(password=PASSWORD, port=self.port, dir=self.folder, owner=owner)
        )
        os.chmod(self.config, 0o644)
        self.server: subprocess.Popen | None = None
        self.feeder: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.server = subprocess.Popen(
            ["icecast2", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "server.err", "ab"),  # noqa: SIM115 - the child owns it
        )
        deadline = time.monotonic() + timeout
        while not self._port_open():
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise RuntimeError(f"icecast did not start: {self.log()}")
            time.sleep(0.1)
        self._feed()
        while not self._mount_up():
            if self.feeder.poll() is not None:  # the server was not ready for it yet
                time.sleep(0.3)
                self._feed()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stream did not come up: {self.log()}")
            time.sleep(0.2)

    def _feed(self) -> None:
        self.feeder = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
             "-stream_loop", "-1", "-i", str(self.clip), "-vn", "-c:a", "libmp3lame",
             "-b:a", "128k", "-content_type", "audio/mpeg", "-f", "mp3",
             f"icecast://source:{PASSWORD}@127.0.0.1:{self.port}{MOUNT}"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "feeder.err", "ab"),  # noqa: SIM115 - the child owns it
        )  # fmt: skip

    def _port_open(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def _mount_up(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as r:
                return r.status == 200 and len(r.read(4096)) > 0
        except OSError:
            return False

    def stop(self) -> None:
        for proc in (self.feeder, self.server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.feeder = self.server = None

    def cleanup(self) -> None:
        """Stop, and remove a folder made here."""
        self.stop()
        if self.folder.name.startswith("streammood-icecast-"):
            shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        parts = []
        for name in ("server.err", "feeder.err", "error.log"):
            p = self.folder / name
            if p.exists():
                parts.append(f"{name}: {p.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)
