import numpy as np
import pytest

from streammood.runtime.labels import QUADRANTS, quadrant_index, quadrant_of, va_from_probs


def test_class_order_matches_bus_schema():
    from streammood.bus.schema import QUADRANTS as BUS_QUADRANTS

    assert QUADRANTS == ("AP", "AN", "PP", "PN") == BUS_QUADRANTS


@pytest.mark.parametrize(
    ("valence", "arousal", "expected"),
    [(0.5, 0.5, "AP"), (-0.5, 0.5, "AN"), (0.5, -0.5, "PP"), (-0.5, -0.5, "PN"),
     (0.0, 0.3, "AN"), (0.3, 0.0, "PP"), (0.0, 0.0, "PN"), (1e-6, 1e-6, "AP")],
)
def test_quadrant_of_and_threshold_zero(valence, arousal, expected):
    assert quadrant_of(valence, arousal) == expected


def test_quadrant_index_vectorised():
    v = np.array([0.9, -0.9, 0.9, -0.9])
    a = np.array([0.9, 0.9, -0.9, -0.9])
    np.testing.assert_array_equal(quadrant_index(v, a), [0, 1, 2, 3])
    assert quadrant_index(v[:, None], a[None, :]).shape == (4, 4)


def test_va_from_probs_corners_and_centre():
    corners = va_from_probs(np.eye(4))
    np.testing.assert_allclose(corners, [[1, 1], [-1, 1], [1, -1], [-1, -1]])
    for k, (v, a) in enumerate(corners):
        assert quadrant_of(v, a) == QUADRANTS[k]
    np.testing.assert_allclose(va_from_probs(np.full(4, 0.25)), [0, 0], atol=1e-7)


def test_va_from_probs_formula_and_batch_shape():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(3, 5)).astype(np.float32)
    va = va_from_probs(p)
    assert va.shape == (3, 5, 2)
    ap, an, pp, pn = np.moveaxis(p, -1, 0)
    np.testing.assert_allclose(va[..., 0], ap + pp - an - pn, atol=1e-6)
    np.testing.assert_allclose(va[..., 1], ap + an - pp - pn, atol=1e-6)
    with pytest.raises(ValueError, match="4"):
        va_from_probs(np.ones((2, 3)))
