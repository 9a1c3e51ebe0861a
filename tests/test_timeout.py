"""A test that hangs fails (pytest-timeout, with a default for every test) instead of blocking
CI forever."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_has_a_time_limit():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(config["timeout"]) <= 600


def test_a_hanging_test_fails(tmp_path: Path):
    (tmp_path / "test_hang.py").write_text(
        "import threading\n\ndef test_hang():\n    threading.Event().wait()\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=2"]
        + ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout[-2000:]
    assert "Timeout" in run.stdout and "1 failed" in run.stdout
