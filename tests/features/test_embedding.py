"""The LiteRT serving side of the musicnn branch (no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streammood.errors import StreammoodError
from streammood.features.embedding import DEFAULT_TFLITE, EmbedderError, MusicnnEmbedder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedder() -> MusicnnEmbedder:
    return MusicnnEmbedder(DEFAULT_TFLITE)


def test_import_does_not_load_tensorflow():
    code = ("import sys, streammood.features.embedding as e; e.MusicnnEmbedder(e.DEFAULT_TFLITE)"
            ".embed(__import__('numpy').zeros((2, 187, 96), 'float32'));"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')];"
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shapes_and_batching(embedder, musicnn_patches):
    assert embedder.dim == 656  # MSD + MTT musicnn (200 each) + MSD VGG (256)
    batch = embedder.embed(musicnn_patches)
    assert batch.shape == (8, 656) and batch.dtype == np.float32
    one_by_one = np.stack([embedder.embed(p) for p in musicnn_patches])
    np.testing.assert_allclose(batch, one_by_one, rtol=0, atol=1e-5)
    assert embedder.embed(musicnn_patches[:0]).shape == (0, 656)
    np.testing.assert_allclose(embedder.embed(musicnn_patches[3:5]), batch[3:5], atol=1e-5)
    # different music gives different embeddings
    assert np.abs(batch[0] - batch[6]).max() > 0.5


def test_float64_input_is_accepted(embedder, musicnn_patches):
    np.testing.assert_allclose(embedder.embed(musicnn_patches[:2].astype(np.float64)),
                               embedder.embed(musicnn_patches[:2]), atol=1e-6)


def test_wrong_patch_shape_is_a_clear_error(embedder):
    with pytest.raises(EmbedderError, match=r"must be \(k, 187, 96\), got \(2, 100, 96\)"):
        embedder.embed(np.zeros((2, 100, 96), np.float32))


def test_missing_or_corrupt_model_file(tmp_path: Path):
    with pytest.raises(EmbedderError, match="not found"):
        MusicnnEmbedder(tmp_path / "nope.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(DEFAULT_TFLITE.read_bytes()[:1000])
    with pytest.raises(EmbedderError, match="bad.tflite: not a valid LiteRT model"):
        MusicnnEmbedder(bad)
    assert issubclass(EmbedderError, StreammoodError)


def test_litert_notice_stays_off_the_terminal(shipped_model):
    """LiteRT's delegate notice (printed natively on descriptor 2) is not shown; the embedding
    still works and other stderr output still gets through."""
    import subprocess
    import sys

    code = (
        "import os, numpy as np\n"
        "from streammood.features.embedding import MusicnnEmbedder\n"
        f"e = MusicnnEmbedder({str(shipped_model.file('embedder'))!r})\n"
        "print(e.embed(np.zeros((2, 187, 96), np.float32)).shape)\n"
        "os.write(2, b'other line\\n')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"(2, {shipped_model.emb_dim})"
    assert "XNNPACK" not in run.stderr and "other line" in run.stderr
