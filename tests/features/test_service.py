"""The shared embedding service: one interpreter thread for many feature stages, batching."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streammood.features.embedding import DEFAULT_TFLITE, MusicnnEmbedder
from streammood.features.service import EmbeddingService


def test_waiting_patches_share_one_call_and_equal_single_calls(musicnn_patches):
    """Real patches of real music: those waiting when the thread is free go into one batched
    call, with the same values as one call per patch; ``on_done`` fires for each."""
    alone = MusicnnEmbedder(DEFAULT_TFLITE)
    expected = np.stack([alone.embed(p) for p in musicnn_patches])
    service = EmbeddingService(MusicnnEmbedder(DEFAULT_TFLITE), max_batch=16)
    done = []
    try:
        gate = threading.Event()
        blocker = service.submit(musicnn_patches[0], lambda _f: gate.wait(10))  # holds the thread
        futures = [service.submit(p, lambda f: done.append(f)) for p in musicnn_patches]
        gate.set()
        got = np.stack([f.result(timeout=60) for f in futures])
        blocker.result(timeout=60)
    finally:
        service.close()
    np.testing.assert_array_equal(got, expected)  # batched or not: the same values
    assert len(done) == len(musicnn_patches)
    assert service.stats.patches == len(musicnn_patches) + 1
    assert service.stats.calls <= 3 and service.stats.largest_batch >= len(musicnn_patches) - 1


def test_two_interpreters_and_close_cancels_what_waits(musicnn_patches):
    service = EmbeddingService([MusicnnEmbedder(DEFAULT_TFLITE) for _ in range(2)], max_batch=1)
    futures = [service.submit(p) for p in musicnn_patches]
    first = futures[0].result(timeout=60)
    service.close()
    assert first.shape == (service.dim,)
    assert all(f.done() for f in futures)  # computed or cancelled, none left waiting
    assert not any(t.is_alive() for t in service._threads)
    with pytest.raises(RuntimeError, match="closed"):
        service.submit(musicnn_patches[0])
