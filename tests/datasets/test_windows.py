import numpy as np

from streammood.datasets.cache import ClipFeatures
from streammood.datasets.windows import fit_steps, make_window, stack_windows


def _clip(n, d=3):
    steps = np.arange(n, dtype=np.float32)
    return ClipFeatures(
        mfcc=np.broadcast_to(steps[:, None, None], (n, 21, 20)).copy(),
        lld=np.broadcast_to(steps[:, None], (n, 260)).copy(),
        emb=np.broadcast_to(steps[:, None], (n, d)).copy(),
        t_start=np.arange(n) * 0.5,
        path=f"clip{n}",
    )


def test_long_clip_is_cropped_to_first_60_steps():
    mfcc, lld, emb, n_pad = fit_steps(_clip(75))
    assert n_pad == 0
    assert mfcc.shape == (60, 21, 20) and lld.shape == (60, 260) and emb.shape == (60, 3)
    np.testing.assert_array_equal(lld[:, 0], np.arange(60))


def test_short_clip_is_padded_by_repeating_its_last_step():
    w = make_window(_clip(57), song_id="s", group="g", label=2)
    assert w.n_pad == 3
    np.testing.assert_array_equal(w.lld[:, 0], [*range(57), 56, 56, 56])
    np.testing.assert_array_equal(w.mfcc[57:], np.repeat(w.mfcc[56:57], 3, axis=0))
    assert w.mask.sum() == 57 and not w.mask[57:].any()


def test_window_from_a_start_step():
    w = make_window(_clip(90), song_id="2", group="2", va=np.zeros((60, 2)), start=29)
    np.testing.assert_array_equal(w.lld[:, 0], np.arange(29, 89))
    assert w.t_start == 14.5 and w.n_pad == 0


def test_stack_windows_shapes():
    ws = [
        make_window(_clip(n), song_id=str(n), group="g", label=n % 4, va=np.ones(2))
        for n in (50, 60, 70)
    ]
    ws.append(make_window(_clip(60), song_id="x", group="h"))
    out = stack_windows(ws)
    assert out["mfcc"].shape == (4, 60, 21, 20) and out["mfcc"].dtype == np.float32
    assert out["lld"].shape == (4, 60, 260) and out["emb"].shape == (4, 60, 3)
    np.testing.assert_array_equal(out["label"], [2, 0, 2, -1])
    np.testing.assert_array_equal(out["n_pad"], [10, 0, 0, 0])
    assert out["mask"].shape == (4, 60)
    assert "va" not in out  # one window has none
    assert list(out["group"]) == ["g", "g", "g", "h"]
    assert stack_windows(ws[:3])["va"].shape == (3, 2)
