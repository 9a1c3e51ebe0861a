"""``extract_offline`` with two threads (openSMILE and half the embedding in a worker) gives the
same values as one thread and as the whole-signal reference, on real music."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import streammood.features.extractor as extractor
from streammood.features.embedding import MusicnnEmbedder, hold_embeddings
from streammood.features.extractor import extract_offline
from streammood.features.mel import mel_patches_offline
from streammood.features.smile import lld_offline


def _reference(y: np.ndarray, sr: int, embedder: MusicnnEmbedder) -> dict[str, np.ndarray]:
    """Every feature as before the threads: whole-signal mel, one embedder call for all."""
    from streammood.audio.framer import Framer
    from streammood.features.mfcc import mfcc_offline

    framer = Framer(sr)
    steps = framer.push(y) + framer.finish()
    y16 = np.concatenate([s.y16 for s in steps])
    patch_steps, patches = mel_patches_offline(y16)
    return {
        "mfcc": mfcc_offline(np.concatenate([s.y22 for s in steps])),
        "lld": lld_offline(np.concatenate([y16, framer.pending16()]), len(steps)),
        "patch_steps": patch_steps,
        "mel_patches": patches,
        "emb": hold_embeddings(patch_steps, embedder.embed(patches), len(steps)),
    }


@pytest.fixture(scope="module")
def music(long_music) -> tuple[np.ndarray, int]:
    """~60 s of two real clips back to back (13 patches: 0, 5, 10, 20, ..., 110)."""
    return long_music


def test_two_threads_equal_one_and_the_reference(music, shipped_model, monkeypatch):
    y, sr = music
    embedder = shipped_model.embedder()
    ref = _reference(y, sr, embedder)
    monkeypatch.setattr(extractor, "EMBED_BATCH", 2)  # 7 batches: both threads take some
    callers: list[str] = []
    embed = MusicnnEmbedder.embed

    def spy(self, patches):
        callers.append(threading.current_thread().name)
        return embed(self, patches)

    monkeypatch.setattr(MusicnnEmbedder, "embed", spy)
    one = extract_offline(y, sr, embedder, threads=1)
    assert set(callers) == {"MainThread"}
    callers.clear()
    two = extract_offline(y, sr, embedder, threads=2)
    assert len(callers) == 7 and any(c.startswith("streammood-offline") for c in callers)
    for name, want in ref.items():
        np.testing.assert_allclose(getattr(one, name), want, rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(getattr(two, name), want, rtol=0, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(two.emb, one.emb)
    np.testing.assert_array_equal(two.lld, one.lld)
    assert not np.array_equal(two.emb[0], two.emb[10])
    assert not any(t.name.startswith("streammood-offline") for t in threading.enumerate())


def test_without_embedder_and_bad_threads(music):
    y, sr = music
    x = y[: 20 * sr]
    one, two = extract_offline(x, sr), extract_offline(x, sr, threads=2)
    assert two.emb.shape == (40, 0) and two.mel_patches.shape == (5, 187, 96)  # 0, 5, 10, 20, 30
    for name in ("mfcc", "lld", "mel_patches", "emb"):
        np.testing.assert_array_equal(getattr(two, name), getattr(one, name), err_msg=name)
    with pytest.raises(ValueError, match="threads"):
        extract_offline(x, sr, threads=3)


def test_a_failing_embedder_stops_the_worker(music, shipped_model, monkeypatch):
    """An error on the calling thread comes out, and the worker takes no more batches and is
    stopped before extract_offline returns."""
    y, sr = music
    monkeypatch.setattr(extractor, "EMBED_BATCH", 1)
    calls = {"n": 0}
    embed = MusicnnEmbedder.embed

    def fail_on_main(self, patches):
        if threading.current_thread() is threading.main_thread():
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("embedder broke")
        return embed(self, patches)

    monkeypatch.setattr(MusicnnEmbedder, "embed", fail_on_main)
    with pytest.raises(RuntimeError, match="embedder broke"):
        extract_offline(y, sr, shipped_model.embedder(), threads=2)
    assert not any(t.name.startswith("streammood-offline") for t in threading.enumerate())
