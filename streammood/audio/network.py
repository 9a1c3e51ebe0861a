"""Network streams (HTTP/Icecast/Shoutcast MP3 and AAC, HLS, RTMP, UDP/RTP): decoded by Debian's
``ffmpeg`` in a subprocess to raw float32 mono on a pipe.

:class:`UrlStream` is one connection: it starts ``ffmpeg``, reads what arrived without blocking
(the caller waits on :meth:`UrlStream.fileno` with a selector, so one thread serves every URL of
a process) and tells when the connection ended and why. Reconnecting is the caller's job
(:class:`~streammood.audio.mux.SourceMux`: backoff, a counted gap, stream time that goes on).
ffmpeg's own HTTP reconnect options are not used: they would join the audio before and after a
drop as if nothing had been lost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import numpy as np

from streammood.errors import StreammoodError

__all__ = ["FFMPEG_RATE", "UrlError", "UrlStream", "ffmpeg_command", "find_ffmpeg"]

FFMPEG_RATE = 22_050
"""Rate ``ffmpeg`` decodes to, Hz: the MFCC path's, so only the 16 kHz path needs resampling."""
IO_TIMEOUT_S = 10.0
"""A connection that delivers nothing for this long is dropped (``ffmpeg -rw_timeout``)."""
_READ = 1 << 16


class UrlError(StreammoodError):
    """A URL source cannot be used (no ffmpeg, bad URL)."""


def find_ffmpeg() -> str:
    """Path of the ``ffmpeg`` executable.

    Raises
    ------
    UrlError
        ffmpeg is not installed (Debian package ``ffmpeg``).
    """
    path = shutil.which("ffmpeg")
    if path is None:
        raise UrlError("url sources need ffmpeg (install the Debian package ffmpeg)")
    return path


def ffmpeg_command(url: str, rate: int = FFMPEG_RATE, ffmpeg: str = "ffmpeg") -> list[str]:
    """The ``ffmpeg`` command line that decodes ``url`` to float32 mono at ``rate`` Hz on stdout.

    Parameters
    ----------
    url : str
        Anything ffmpeg opens: ``http(s)://`` (Icecast, Shoutcast, a file), ``.m3u8`` (HLS),
        ``rtmp://``, ``udp://``, ``rtp://``, a local path.
    rate : int
        Output sample rate, Hz.
    ffmpeg : str
        The executable.
    """
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("http", "https", "rtmp", "rtmps", "tcp"):
        cmd += ["-rw_timeout", str(int(IO_TIMEOUT_S * 1e6))]
    elif scheme in ("udp", "rtp"):  # a sender that stops ends the connection too
        cmd += ["-timeout", str(int(IO_TIMEOUT_S * 1e6))]
    return cmd + ["-i", url, "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1"]


class UrlStream:
    """One ffmpeg connection to a URL: float32 mono samples at :data:`FFMPEG_RATE` Hz.

    Parameters
    ----------
    url : str
        See :func:`ffmpeg_command`.
    rate : int
        Output rate, Hz.

    Attributes
    ----------
    started_at : float
        Wall clock of the start, Unix s.
    samples : int
        Samples delivered by this connection.
    """

    def __init__(self, url: str, rate: int = FFMPEG_RATE) -> None:
        self.url = url
        self.rate = int(rate)
        self.samples = 0
        self._rest = b""
        self._err = b""
        self.started_at = time.time()
        self._proc = subprocess.Popen(
            ffmpeg_command(url, self.rate, find_ffmpeg()),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._out = self._proc.stdout.fileno()
        self._errfd = self._proc.stderr.fileno()
        for fd in (self._out, self._errfd):
            os.set_blocking(fd, False)
        self._closed = False

    def fileno(self) -> int:
        """The audio pipe (readable when samples or the end arrive)."""
        return self._out

    def errno(self) -> int:
        """ffmpeg's stderr pipe (readable when it reports something)."""
        return self._errfd

    def read(self) -> np.ndarray | None:
        """The samples that arrived, ``(n,)`` float32 (possibly empty); None once the connection
        has ended (then :meth:`reason` says why)."""
        if self._closed:
            return None
        try:
            data = os.read(self._out, _READ)
        except BlockingIOError:
            return np.zeros(0, np.float32)
        if not data:
            return None
        data = self._rest + data
        whole = len(data) // 4 * 4
        self._rest = data[whole:]
        y = np.frombuffer(data[:whole], "<f4").astype(np.float32)
        np.nan_to_num(y, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        self.samples += y.size
        return y

    def drain_errors(self) -> None:
        """Keep what ffmpeg wrote on stderr (the last 4 kB), so its pipe never fills."""
        if self._closed:
            return
        with contextlib.suppress(BlockingIOError, OSError, ValueError):
            while chunk := os.read(self._errfd, _READ):
                self._err = (self._err + chunk)[-4096:]

    def reason(self) -> str:
        """Why the connection ended: ffmpeg's exit status and its last error line."""
        self.close()
        code = self._proc.returncode
        lines = [ln for ln in self._err.decode(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "end of stream"
        return f"ffmpeg exit {code}: {last}" if code else last

    def close(self) -> None:
        """Stop ffmpeg (idempotent)."""
        if self._closed:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self.drain_errors()
        self._closed = True
        for pipe in (self._proc.stdout, self._proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
