"""The installed product: the wheel carries the shipped model's serving files (and nothing of the
research or training side), and a fresh environment without TensorFlow tags a file from a folder
outside the checkout (issue 11, item 5)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "streammood-4q"
SERVING = ("manifest.json", "step.tflite", "embedder.tflite", "norm.npz")
IN_WHEEL = "streammood/models/streammood-4q/"
SECONDS, RATE, STEP_SECONDS = 6.3, 22_050, 0.5  # 12 whole 0.5 s steps


def _packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def _sources() -> list[str]:
    """Files of ``streammood/`` (relative to the root): the committed ones in a git checkout, so
    that a package still being written in a shared working tree does not count yet."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "streammood"], cwd=ROOT, check=True,
                             capture_output=True, text=True, timeout=30).stdout
        return [f for f in out.split("\0") if f and (ROOT / f).is_file()]
    except (OSError, subprocess.SubprocessError):
        return [str(f.relative_to(ROOT)) for f in (ROOT / "streammood").rglob("*")
                if f.is_file() and "__pycache__" not in f.parts]


def test_package_list_covers_the_source_tree():
    """``pyproject.toml`` lists the packages by hand (the model folder is mapped in from
    ``models/``): every folder of ``streammood/`` with modules or data must be in it."""
    listed = set(_packages())
    tree = {".".join(Path(f).parent.parts) for f in _sources()}
    assert tree <= listed, f"add {sorted(tree - listed)} to [tool.setuptools] packages"
    assert {"streammood.models", "streammood.models.musicnn"} <= listed


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("STREAMMOOD_MODEL", None)
    return {**env, "PYTHONNOUSERSITE": "1", **extra}


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def _build_wheel(tmp: Path) -> Path:
    """Build from a copy of what the build reads, so that setuptools' ``build/`` and a stale
    ``build/lib`` never touch (or leak from) the shared working tree."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "streammood", src / "streammood", ignore=skip)
    shutil.copytree(ROOT / "models", src / "models", ignore=skip)
    out = tmp / "dist"
    # build isolation as a user's `pip install .` has it (setuptools from pip's cache/index)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)], 300)
    (wheel,) = out.glob("streammood-*.whl")
    return wheel


def _check_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    manifest = json.loads((MODEL / "manifest.json").read_text())
    with zipfile.ZipFile(wheel) as zf:
        for name in SERVING:
            assert IN_WHEEL + name in names, f"{name} is not in the wheel"
        for entry in manifest["files"].values():
            if entry["path"] in manifest["keras_members"]:
                continue
            digest = hashlib.sha256(zf.read(IN_WHEEL + entry["path"])).hexdigest()
            assert digest == entry["sha256"], f"{entry['path']}: not the repository's bytes"
    tflite = sorted(n for n in names if n.endswith(".tflite"))
    assert tflite == [IN_WHEEL + "embedder.tflite", IN_WHEEL + "step.tflite"], tflite
    for name in names:
        top = name.split("/")[0]
        assert top in ("streammood", "streammood-0.1.0.dist-info"), name
        assert "/keras/" not in name and "/report/" not in name, name
        assert not name.startswith(("tests/", "benchmarks/", "research/", "scripts/")), name
    sources = set(_sources())
    assert sources <= set(names), f"files missing from the wheel: {sorted(sources - set(names))}"


def _constraints(tmp: Path) -> Path:
    """Pin the test environment to the versions this one has: their wheels are in pip's cache or
    on its index already, and the resolver has nothing to search."""
    pins = sorted(
        {
            f"{d.metadata['Name']}=={d.version}"
            for d in metadata.distributions()
            if d.metadata["Name"] and d.metadata["Name"].lower() != "streammood"
        }
    )
    path = tmp / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def _tone_wav(path: Path) -> None:
    import soundfile as sf

    rng = np.random.default_rng(11)
    t = np.arange(int(SECONDS * RATE)) / RATE
    y = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 330 * t * (1 + t / SECONDS))
    y += 0.05 * rng.standard_normal(t.size)
    y *= (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)) ** 2  # a pulse, so steps differ
    sf.write(path, y.astype(np.float32), RATE)


@pytest.mark.slow
def test_wheel_installs_and_tags_outside_the_checkout(tmp_path):
    """``pip install`` the wheel (runtime dependencies only, no TensorFlow) into a fresh venv,
    then ``streammood analyze`` a WAV from a folder outside the checkout with the package's copy
    of the shipped model."""
    if not (MODEL / "manifest.json").is_file():
        pytest.skip(f"no shipped model at {MODEL}")
    t0 = time.monotonic()
    wheel = _build_wheel(tmp_path)
    size_mb = wheel.stat().st_size / 1e6
    _check_contents(wheel)
    t_built = time.monotonic()

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], 120)
    python = venv / "bin" / "python"
    install = [
        sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile",
        "-c", str(_constraints(tmp_path)), str(wheel),
    ]  # pip's cache as configured (no --no-cache-dir): the same wheels as this environment's
    _run(install, 480, env=_clean_env())
    t_installed = time.monotonic()

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _clean_env()
    no_tf = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True,
                           text=True, cwd=work, env=env, timeout=60)
    assert no_tf.returncode != 0 and "No module named 'tensorflow'" in no_tf.stderr

    where = _run([str(python), "-c", (
        "import json, streammood\n"
        "from streammood.features.embedding import DEFAULT_TFLITE\n"
        "from streammood.runtime.artifact import load_artifact, shipped_model_dir\n"
        "a = load_artifact()\n"
        "print(json.dumps([streammood.__file__, str(shipped_model_dir()), str(a.path),"
        " str(DEFAULT_TFLITE)]))\n"
    )], 120, cwd=work, env=env)
    package, shipped, loaded, embedder = json.loads(where.stdout)
    site = Path(package).parent
    assert venv in Path(package).parents and ROOT not in Path(package).parents
    assert Path(shipped) == Path(loaded) == site / "models" / "streammood-4q"
    assert Path(embedder) == Path(shipped) / "embedder.tflite"

    _tone_wav(work / "that.wav")
    cli = str(venv / "bin" / "streammood")
    bad = subprocess.run([cli, "analyze", "that.wav", "--out", "t.csv"], capture_output=True,
                         text=True, cwd=work, env={**env, "STREAMMOOD_MODEL": str(work / "no")},
                         timeout=120)
    assert bad.returncode == 2 and "no such model folder ($STREAMMOOD_MODEL)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr

    _run([cli, "analyze", "that.wav", "--out", "t.csv"], 300, cwd=work, env=env)
    t_done = time.monotonic()
    with open(work / "t.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == math.floor(SECONDS / STEP_SECONDS) == 12
    quadrants = ("AP", "AN", "PP", "PN")
    for i, row in enumerate(rows):
        assert int(row["seq"]) == i and float(row["t_start"]) == pytest.approx(i * STEP_SECONDS)
        probs = [float(row[f"p_{q}"]) for q in quadrants]
        assert all(0.0 <= p <= 1.0 for p in probs) and sum(probs) == pytest.approx(1, abs=1e-3)
        assert row["quadrant"] == quadrants[int(np.argmax(probs))]
        assert -1.0 <= float(row["valence"]) <= 1.0 and -1.0 <= float(row["arousal"]) <= 1.0
        assert int(row["window_steps"]) == i + 1
    print(
        f"\nwheel {wheel.name}: {size_mb:.1f} MB; build+check {t_built - t0:.0f} s, "
        f"venv+install {t_installed - t_built:.0f} s, checks+analyze {t_done - t_installed:.0f} s"
    )
