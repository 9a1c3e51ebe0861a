"""Loading model artifacts: checks and one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest

from streammood.runtime.artifact import MANIFEST, ModelError, load_artifact
from streammood.runtime.rolling import MoodRuntime


@pytest.fixture()
def artifact_copy(shipped_model, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(shipped_model.path, dst)
    return dst


def test_shipped_model_loads_and_describes_itself(shipped_model):
    m = shipped_model.manifest
    assert shipped_model.labels == ("AP", "AN", "PP", "PN")
    assert shipped_model.task == "classification"
    assert shipped_model.rows == 60
    assert m["training"]["dataset"] == "4q"
    # test figures come from the held-out twin; the shipped model was refit on every song
    tr, test = m["training"], set(m["training"]["test_songs"])
    assert len(test) == tr["split"]["test"]["songs"] > 0
    n_songs = tr["split"]["train+validation"]["songs"] + len(test)
    assert test < set(tr["seen_songs"]) and len(tr["seen_songs"]) == n_songs
    assert [r["train_songs"] for r in tr["refit"]] == [n_songs]
    assert 0.0 <= m["metrics"]["test"]["macro_f1"] <= 1.0


def test_missing_folder_and_manifest(tmp_path):
    with pytest.raises(ModelError, match="no such model folder"):
        load_artifact(tmp_path / "nope")
    with pytest.raises(ModelError, match="not a streammood model"):
        load_artifact(tmp_path)


def test_wrong_file_is_not_a_model(tmp_path):
    (tmp_path / MANIFEST).write_text("this is not json")
    with pytest.raises(ModelError, match="unreadable manifest"):
        load_artifact(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not a streammood model"):
        load_artifact(tmp_path)


def test_feature_layout_mismatch_is_refused(artifact_copy):
    manifest = json.loads((artifact_copy / MANIFEST).read_text())
    manifest["feature_version"] = "999"
    (artifact_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="feature layout v999"):
        load_artifact(artifact_copy)


def test_corrupt_model_file_is_detected(artifact_copy):
    step = artifact_copy / "step.tflite"
    data = bytearray(step.read_bytes())
    data[len(data) // 2] ^= 0xFF
    step.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_artifact(artifact_copy)


def test_truncated_model_file_fails_cleanly_without_checksum(artifact_copy):
    step = artifact_copy / "step.tflite"
    step.write_bytes(step.read_bytes()[:100])
    artifact = load_artifact(artifact_copy, verify=False)
    with pytest.raises(ModelError, match="not a valid LiteRT model"):
        MoodRuntime(artifact)


def test_missing_file_is_named(artifact_copy):
    (artifact_copy / "embedder.tflite").unlink()
    with pytest.raises(ModelError, match="missing file embedder.tflite"):
        load_artifact(artifact_copy)


def test_model_search_order(monkeypatch, tmp_path):
    """``--model``, then ``$STREAMMOOD_MODEL``, then the shipped model; empty counts as unset."""
    from streammood.runtime.artifact import MODEL_ENV, resolve_model_dir, shipped_model_dir

    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert resolve_model_dir() == (shipped_model_dir(), "the shipped model")
    monkeypatch.setenv(MODEL_ENV, "")
    assert resolve_model_dir("")[0] == shipped_model_dir()
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "env"))
    assert resolve_model_dir() == (tmp_path / "env", f"${MODEL_ENV}")
    assert resolve_model_dir(tmp_path / "cli") == (tmp_path / "cli", "--model")
    with pytest.raises(ModelError, match=r"env: no such model folder \(\$STREAMMOOD_MODEL\)"):
        load_artifact()


def test_shipped_model_is_found_through_the_package(shipped_model):
    """An editable install (these tests) reads the repository's folder; the product embedder is
    the shipped model's (same bytes as the exported musicnn file)."""
    from streammood.features.embedding import DEFAULT_TFLITE, MSD_MTT_VGG_TFLITE
    from streammood.runtime.artifact import shipped_model_dir

    assert shipped_model_dir() == shipped_model.path.resolve()
    assert shipped_model_dir() / "embedder.tflite" == DEFAULT_TFLITE
    assert DEFAULT_TFLITE.read_bytes() == MSD_MTT_VGG_TFLITE.read_bytes()


def test_serving_copy_without_keras_members(artifact_copy):
    """The installed package carries no ``keras/``: it still loads and verifies, and asking for
    the members says why they are not there; a member that is there is still checked."""
    shutil.rmtree(artifact_copy / "keras")
    artifact = load_artifact(artifact_copy)
    MoodRuntime(artifact)
    with pytest.raises(ModelError, match="no Keras member keras/member0"):
        artifact.keras_members()
    (artifact_copy / "keras").mkdir()
    (artifact_copy / "keras" / "member0.weights.h5").write_bytes(b"edited")
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_artifact(artifact_copy)
