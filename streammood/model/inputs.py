"""The model's per-step inputs, as arrays: pure numpy, shared by training, offline analysis and
the streaming runtime."""

from __future__ import annotations

import numpy as np


def hold_embeddings(patch_steps: np.ndarray, embeddings: np.ndarray, n_steps: int) -> np.ndarray:
    """Per-step pretrained embeddings, each held until the next patch.

    The live path computes a fresh embedding only at the steps in ``patch_steps`` (every
    ``EMBED_EVERY`` steps, from step 0) and reuses it for the steps in between; this spreads the
    same values over an offline step axis so training sees exactly what serving sees.

    Parameters
    ----------
    patch_steps : np.ndarray
        ``(k,)`` increasing step numbers at which a patch was embedded; must start at 0 when
        ``n_steps > 0``.
    embeddings : np.ndarray
        ``(k, D)`` embeddings of those patches.
    n_steps : int
        Number of steps.

    Returns
    -------
    np.ndarray
        ``(n_steps, D)`` float32.
    """
    patch_steps = np.asarray(patch_steps)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if n_steps == 0:
        return np.zeros((0, embeddings.shape[-1]), np.float32)
    if len(patch_steps) == 0 or patch_steps[0] != 0:
        raise ValueError("patch_steps must start at step 0")
    idx = np.searchsorted(patch_steps, np.arange(n_steps), side="right") - 1
    return embeddings[idx]
