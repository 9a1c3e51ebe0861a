"""The project's stream-versus-offline parity criterion, as an assertion."""

from __future__ import annotations

import numpy as np


def assert_parity(stream: np.ndarray, offline: np.ndarray, what: str) -> None:
    """The project's parity criterion: for every feature (last axes flattened), the largest
    |stream - offline| over steps is at most 1e-3 x that feature's std across steps (plus 1e-6
    absolute, for features constant over the clip)."""
    assert stream.shape == offline.shape, f"{what}: shapes {stream.shape} != {offline.shape}"
    s = stream.reshape(len(stream), -1).astype(np.float64)
    o = offline.reshape(len(offline), -1).astype(np.float64)
    assert np.isfinite(s).all() and np.isfinite(o).all(), f"{what}: non-finite values"
    dev = np.abs(s - o).max(axis=0)
    tol = 1e-3 * o.std(axis=0) + 1e-6
    bad = np.flatnonzero(dev > tol)
    if bad.size:
        i = bad[0]
        raise AssertionError(
            f"{what}: {bad.size} features off, e.g. column {i}: {dev[i]:.3g} > {tol[i]:.3g}"
        )
