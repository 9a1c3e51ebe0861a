"""Stream training windows: restarts and splices keep every step's features and labels right."""

from __future__ import annotations

import numpy as np
import pytest

from streammood.training.augment import restart_windows, splice_windows, stream_training_windows


def _arrays(n=6, t=60, d=3):
    """Windows whose every feature value encodes (window, step); clip 5 is 45 steps long."""
    step = np.arange(t, dtype=np.float32)[None, :]
    win = np.arange(n, dtype=np.float32)[:, None]
    code = win * 1000 + step  # (n, t)
    mask = np.ones((n, t), bool)
    mask[5, 45:] = False
    emb = np.repeat((win * 1000 + (step // 10) * 10)[..., None], d, axis=2)  # held every 10
    return {
        "mfcc": np.repeat(code[..., None, None], 2, axis=2).repeat(2, axis=3),
        "lld": np.repeat(code[..., None], 4, axis=2),
        "emb": emb,
        "mask": mask,
        "label": np.arange(n) % 4,
        "song_id": np.array([f"s{i}" for i in range(n)]),
        "group": np.array([f"g{i}" for i in range(n)]),
    }


def test_restart_windows_begin_at_a_patch_step_and_pad_the_end():
    a = _arrays()
    r = restart_windows(a, starts=(20,))
    assert r["lld"].shape == (6, 60, 4)
    np.testing.assert_array_equal(r["lld"][1, :40, 0], 1000 + np.arange(20, 60))
    assert r["mask"][1, :40].all() and not r["mask"][1, 40:].any()
    assert r["mask"][5].sum() == 25  # steps 20..44 of the 45-step clip
    np.testing.assert_array_equal(r["label_steps"][2], 2)
    assert r["emb"][1, 0, 0] == 1020  # the patch of step 20 is the window's first embedding
    with pytest.raises(ValueError, match="patch step"):
        restart_windows(a, starts=(15,))


def test_splices_cut_at_k_keep_the_cadence_and_hold_the_first_songs_embedding():
    a = _arrays()
    s = splice_windows(a, 50, seed=3)
    for i in range(50):
        lld = s["lld"][i, :, 0]
        src = (lld // 1000).astype(int)
        k = int(np.argmax(src != src[0]))
        assert 8 <= k <= 52
        wa, wb = src[0], src[k]
        assert wa != wb
        np.testing.assert_array_equal(lld % 1000, np.arange(60))  # B from its own step k
        np.testing.assert_array_equal(s["label_steps"][i, :k], a["label"][wa])
        np.testing.assert_array_equal(s["label_steps"][i, k:], a["label"][wb])
        assert s["label"][i] == a["label"][wb] and s["song_id"][i] == f"s{wb}"
        # first patch of B: the next scheduled one, or the one taken when the change is
        # detected (CHANGE_LAG = 6 steps after the cut), whichever comes first
        p = min(-(-k // 10) * 10, k + 6)
        emb = s["emb"][i, :, 0]
        assert np.all(emb[k:p] == a["emb"][wa, k - 1, 0])  # A's embedding held
        if p < 60:
            assert emb[p] == a["emb"][wb, p, 0]  # B's own from then on
        np.testing.assert_array_equal(s["mask"][i, k:], a["mask"][wb, k:])


def test_stream_training_windows_add_restarts_and_splices():
    a = _arrays()
    out = stream_training_windows(a, seed=1, splice_share=0.5, restart_share=0.5)
    assert len(out["mask"]) == 6 + 3 + 3
    assert out["label_steps"].shape == (12, 60)
    np.testing.assert_array_equal(out["lld"][:6], a["lld"])
    assert set(out) == set(a) | {"label_steps"}
