"""A model that loads must compute: a real step model whose weights are patched to NaN (with the
manifest's checksum recomputed, so only the output check can catch it) is refused at warm-up by
every command; analyze never writes NaN."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streammood.runtime.artifact import MANIFEST, ModelError, load_artifact, sha256_of
from streammood.runtime.checks import OutputError, check_prediction, warm_up
from streammood.runtime.rolling import Prediction
from tests.conftest import ROOT

SERVING = ("manifest.json", "step.tflite", "embedder.tflite", "norm.npz")


def _patch_weights_to_nan(path: Path, name_suffix: str) -> str:
    """Overwrite the bytes of one constant float32 tensor of a LiteRT file with NaN (the first
    whose name ends with ``name_suffix`` and that is in use: not all zeros, as the read-out of a
    branch training switched off is); returns its name. The tensor's bytes are found in the file
    by their value."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    data = bytearray(path.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging"
        interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    for d in interp.get_tensor_details():
        if d["dtype"] != np.float32 or not d["name"].endswith(name_suffix):
            continue
        value = interp.get_tensor(d["index"])
        if not np.any(value):
            continue
        raw = value.tobytes()
        pos = bytes(data).find(raw)
        if value.size >= 64 and pos >= 0 and bytes(data).count(raw) == 1:
            data[pos : pos + len(raw)] = np.full(value.shape, np.nan, np.float32).tobytes()
            path.write_bytes(bytes(data))
            return d["name"]
    raise AssertionError(f"no constant tensor named *{name_suffix} found in {path}")


def _recompute_checksums(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    for entry in manifest["files"].values():
        if (folder / entry["path"]).is_file():
            entry["sha256"] = sha256_of(folder / entry["path"])
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


@pytest.fixture()
def nan_model(shipped_model, tmp_path) -> Path:
    """A serving copy of the shipped model with its output layer's weights NaN, checksums
    recomputed."""
    dst = tmp_path / "nan-model"
    dst.mkdir()
    for name in SERVING:
        shutil.copy(shipped_model.path / name, dst / name)
    _patch_weights_to_nan(dst / "step.tflite", "_out_1/MatMul")  # an output read-out in use
    _recompute_checksums(dst)
    return dst


def test_nan_weights_pass_the_checksum_but_not_the_warm_up(nan_model):
    from streammood.workers.tagging import MoodStage

    artifact = load_artifact(nan_model)  # the checksum cannot tell
    with pytest.raises(ModelError, match="does not compute") as info:
        warm_up(artifact)
    assert "not finite" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match="does not compute"):
        MoodStage(artifact, "src")


def test_infer_refuses_a_model_that_does_not_compute(nan_model, redis_namespace):
    import redis

    from streammood.bus.moods import MoodPublisher
    from streammood.workers.infer import run_infer

    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    with MoodPublisher(client, prefix) as pub, pytest.raises(ModelError, match="does not compute"):
        run_infer(client, load_artifact(nan_model), pub, prefix=prefix, idle_timeout=1)


def test_analyze_with_a_nan_model_exits_2_in_one_line_and_writes_nothing(nan_model, music_clip,
                                                                         tmp_path):
    out = tmp_path / "t.json"
    run = subprocess.run(
        [sys.executable, "-m", "streammood", "analyze", str(music_clip), "--model", str(nan_model),
         "--out", str(out), "--jobs", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("streammood: error")]
    assert len(errors) == 1 and "does not compute" in errors[0]
    assert "Traceback" not in run.stderr and not out.exists()


def test_a_corrupt_embedder_is_refused_by_the_feature_stage(shipped_model, tmp_path):
    from streammood.workers.tagging import feature_stage

    dst = tmp_path / "nan-embedder"
    dst.mkdir()
    for name in SERVING:
        shutil.copy(shipped_model.path / name, dst / name)
    patched = None
    for suffix in ("MatMul", "BiasAdd", "Conv2D"):
        try:
            patched = _patch_weights_to_nan(dst / "embedder.tflite", suffix)
            break
        except AssertionError:
            continue
    assert patched
    _recompute_checksums(dst)
    with pytest.raises(ModelError, match="embedder's output on a known patch is not finite"):
        feature_stage(load_artifact(dst), 22_050)


def test_check_prediction_refuses_what_is_not_a_distribution():
    good = Prediction(np.array([0.1, 0.2, 0.3, 0.4], np.float32), 0.0, 0.4, 60)
    assert check_prediction(good, "here") is good
    for bad in (
        Prediction(np.array([np.nan] * 4, np.float32), math.nan, math.nan, 60),
        Prediction(np.array([0.5, 0.5, 0.5, 0.5], np.float32), 0.0, 0.0, 60),
        Prediction(np.array([1.0, 0.0, 0.0, 0.0], np.float32), math.inf, 0.0, 60),
    ):
        with pytest.raises(OutputError, match="here"):
            check_prediction(bad, "here")


def test_timelines_never_write_nan(tmp_path):
    """A step without a valid prediction is null in JSON and empty in CSV; its quadrant None."""
    import csv

    from streammood.workers.analyze import Timeline, write_timelines

    probs = np.array([[0.7, 0.1, 0.1, 0.1], [np.nan] * 4], np.float32)
    t = Timeline("f.mp3", np.array([0.0, 0.5]), np.array([0.5, 1.0]), probs,
                 np.array([0.6, np.nan], np.float32), np.array([0.6, np.nan], np.float32),
                 np.array([1, 0]))
    assert t.quadrants == ["AP", None] and t.invalid_steps == 1
    write_timelines([t], tmp_path / "t.json")
    text = (tmp_path / "t.json").read_text()
    assert "NaN" not in text

    def refuse(name):
        raise ValueError(name)

    rows = json.loads(text, parse_constant=refuse)
    assert rows[1]["quadrant"] is None and rows[1]["valence"] is None and rows[1]["p_AP"] is None
    assert rows[0]["quadrant"] == "AP"
    write_timelines([t], tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="") as fh:
        second = list(csv.DictReader(fh))[1]
    assert second["valence"] == "" and second["quadrant"] == ""
