"""``train`` and ``evaluate`` end to end on real clips (small subsets, few epochs)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streammood.features.extractor import ModelInputs
from streammood.runtime.artifact import load_artifact
from streammood.runtime.rolling import MoodRuntime
from tests.training.test_quiet import assert_no_tensorflow_chatter

PER_QUADRANT = 6


@pytest.fixture(scope="module")
def small_fourq(fourq_dir: Path, tmp_path_factory) -> Path:
    """A 4Q-layout folder with the first clips of each quadrant (symlinks) and their CSV rows."""
    root = tmp_path_factory.mktemp("fourq-small")
    keep = set()
    for q in ("Q1", "Q2", "Q3", "Q4"):
        (root / q).mkdir()
        for clip in sorted((fourq_dir / q).glob("*.mp3"))[:PER_QUADRANT]:
            os.symlink(clip, root / q / clip.name)
            keep.add(clip.stem)
    for name in ("annotations.csv", "metadata.csv"):
        with open(fourq_dir / name, newline="") as src, open(root / name, "w", newline="") as dst:
            rows = list(csv.reader(src))
            writer = csv.writer(dst)
            writer.writerow(rows[0])
            writer.writerows(r for r in rows[1:] if r[0] in keep)
    return root


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory) -> Path:
    """A feature cache shared by the tests that train on ``small_fourq``."""
    return tmp_path_factory.mktemp("fourq-small-cache")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streammood", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
    )


@pytest.mark.slow
def test_train_then_evaluate_on_real_clips(small_fourq: Path, small_cache: Path, tmp_path: Path):
    out, cache, report = tmp_path / "model", small_cache, tmp_path / "report"
    run = _cli(
        "train",
        "--dataset",
        "4q",
        "--data-dir",
        str(small_fourq),
        "--out",
        str(out),
        "--seeds",
        "2",
        "--epochs",
        "3",
        "--test-size",
        "0.25",
        "--val-size",
        "0.34",
        "--cache-dir",
        str(cache),
        "--jobs",
        "2",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(list(cache.glob("*.npz"))) == 4 * PER_QUADRANT  # features cached once per clip
    # TensorFlow's start-up lines are gone; streammood's warnings are not (libmpg123's damaged
    # frames, summed over the extraction processes into one line for the run)
    assert_no_tensorflow_chatter(run.stderr)
    assert "part2_3_length" not in run.stderr
    damaged = [line for line in run.stderr.splitlines() if "damaged MP3 frames" in line]
    assert len(damaged) == 1 and f"of {4 * PER_QUADRANT} clips extracted" in damaged[0]

    artifact = load_artifact(out)
    manifest = artifact.manifest
    # two members taught one student, and the student is what ships
    assert manifest["members"] == 1 and manifest["task"] == "classification"
    assert len(manifest["training"]["members"]) == 2 and manifest["training"]["student"]
    teacher = json.loads((out / "report" / "ensemble" / "metrics.json").read_text())
    assert manifest["metrics"]["test_ensemble"]["macro_f1"] == teacher["macro_f1"]
    seen, test = set(manifest["training"]["seen_songs"]), manifest["training"]["test_songs"]
    assert seen and test and seen.isdisjoint(test)
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "per_class", "roc_auc", "confusion_matrix"):
        assert key in metrics
    assert np.array(metrics["confusion_matrix"]).sum() == len(test)
    card = (out / "README.md").read_text()
    assert "streammood train --dataset 4q" in card and f"{metrics['macro_f1']:.3f}" in card
    assert "built from an ensemble of 2 seeds" in card and "mean of the members' read-outs" in card

    rt = MoodRuntime(artifact)  # the exported streaming model runs
    (pred,) = rt.push(_silent_step(artifact.emb_dim))
    assert abs(float(pred.probs.sum()) - 1) < 1e-5

    # evaluate: by default only songs the model never saw; the cache is reused
    run = _cli(
        "evaluate",
        "--dataset",
        "4q",
        "--data-dir",
        str(small_fourq),
        "--model",
        str(out),
        "--report",
        str(report),
        "--cache-dir",
        str(cache),
        "--jobs",
        "2",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert_no_tensorflow_chatter(run.stderr)
    evaluated = json.loads((report / "metrics.json").read_text())
    assert evaluated["n_windows"] == len(test)
    assert evaluated["per_window"]["confusion_matrix"] == metrics["per_window"]["confusion_matrix"]
    for png in ("confusion_matrix.png", "va_plane.png"):
        assert (report / png).stat().st_size > 5_000


@pytest.mark.slow
def test_refit_all_ships_a_model_trained_on_every_song(
    small_fourq: Path, small_cache: Path, tmp_path: Path
):
    out, report = tmp_path / "model", tmp_path / "report"
    cached = ("--cache-dir", str(small_cache), "--jobs", "2")
    run = _cli(
        "train", "--dataset", "4q", "--data-dir", str(small_fourq), "--out", str(out),
        "--seeds", "2", "--epochs", "2", "--test-size", "0.25", "--val-size", "0.34",
        "--refit-all", *cached,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    training = load_artifact(out).manifest["training"]
    n, test = 4 * PER_QUADRANT, training["test_songs"]
    # the test figures come from the held-out student; the shipped one saw every song
    assert test and training["split"]["test"]["songs"] == len(test)
    assert training["student"]["train_songs"] == n - len(test)
    assert [r["train_songs"] for r in training["refit"]] == [n]
    assert set(test) < set(training["seen_songs"]) and len(training["seen_songs"]) == n
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert np.array(metrics["confusion_matrix"]).sum() == len(test)
    assert "held-out twin" in (out / "README.md").read_text()

    # evaluate leaves seen songs out by default — here all of them — and says so
    evaluate = ("evaluate", "--dataset", "4q", "--data-dir", str(small_fourq), "--model", str(out))
    run = _cli(*evaluate, "--report", str(report), *cached)
    assert run.returncode == 2 and "every song was used to train" in run.stderr
    assert "Traceback" not in run.stderr
    run = _cli(*evaluate, "--report", str(report), "--include-seen", *cached)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((report / "metrics.json").read_text())["n_windows"] == n


@pytest.mark.slow
def test_train_with_another_embedder_ships_it_and_evaluate_uses_it(
    small_fourq: Path, tmp_path: Path
):
    """``train --embedder`` extracts with that file and ships it; ``evaluate`` extracts with the
    artifact's embedder, so its features are the ones the model was trained on (cache reused)."""
    from streammood.training.student_embedder import build_student, save_student

    embedder = save_student(
        build_student(np.zeros(24), np.ones(24), widths=(4, 4, 4, 4, 4)), tmp_path / "e.tflite"
    )
    out, cache, report = tmp_path / "model", tmp_path / "cache", tmp_path / "report"
    cached = ("--cache-dir", str(cache), "--jobs", "2")
    run = _cli(
        "train", "--dataset", "4q", "--data-dir", str(small_fourq), "--out", str(out),
        "--seeds", "2", "--epochs", "2", "--test-size", "0.25", "--val-size", "0.34",
        "--embedder", str(embedder), *cached,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    artifact = load_artifact(out)
    assert artifact.emb_dim == 24
    assert artifact.file("embedder").read_bytes() == embedder.read_bytes()
    entries = sorted(cache.glob("*.npz"))
    assert len(entries) == 4 * PER_QUADRANT
    assert np.load(entries[0])["emb"].shape[1] == 24
    run = _cli(
        "evaluate", "--dataset", "4q", "--data-dir", str(small_fourq), "--model", str(out),
        "--report", str(report), *cached,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(cache.glob("*.npz")) == entries  # nothing extracted with another embedder
    assert json.loads((report / "metrics.json").read_text())["n_windows"] == len(
        artifact.manifest["training"]["test_songs"]
    )


@pytest.mark.slow
def test_train_regression_on_deam_layout(deam_dir: Path, tmp_path: Path):
    out = tmp_path / "deam-model"
    run = _cli(
        "train",
        "--dataset",
        "deam",
        "--data-dir",
        str(deam_dir),
        "--task",
        "regression",
        "--out",
        str(out),
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--test-size",
        "0",
        "--val-size",
        "0.34",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--jobs",
        "2",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    artifact = load_artifact(out)
    assert artifact.task == "regression" and artifact.manifest["members"] == 1
    assert artifact.manifest["training"]["student"]["train_songs"] > 0  # distilled
    (pred,) = MoodRuntime(artifact).push(_silent_step(artifact.emb_dim))
    assert -1 <= pred.valence <= 1 and -1 <= pred.arousal <= 1


def test_train_refuses_regression_on_4q(small_fourq: Path, tmp_path: Path):
    run = _cli(
        "train",
        "--dataset",
        "4q",
        "--data-dir",
        str(small_fourq),
        "--task",
        "regression",
        "--out",
        str(tmp_path / "m"),
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert run.returncode == 2
    assert "quadrant labels only" in run.stderr and "Traceback" not in run.stderr


def test_evaluate_with_a_wrong_model_folder_is_one_line(small_fourq: Path, tmp_path: Path):
    run = _cli(
        "evaluate",
        "--dataset",
        "4q",
        "--data-dir",
        str(small_fourq),
        "--model",
        str(tmp_path),
        "--report",
        str(tmp_path / "r"),
    )
    assert run.returncode == 2
    assert "not a streammood model" in run.stderr and "Traceback" not in run.stderr


def _silent_step(emb_dim: int) -> ModelInputs:
    """Step 0 of silence-like inputs (all zeros)."""
    return ModelInputs(0, 0.0, 0.5, np.zeros((21, 20)), np.zeros(260), np.zeros(emb_dim))
