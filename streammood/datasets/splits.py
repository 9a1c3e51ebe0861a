"""Group-disjoint, label-stratified, seeded splits (by artist where a data set knows artists).

Songs by one artist (one ``group``) always land on the same side of a split, so test figures are
about artists the model never saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from streammood.errors import StreammoodError


def split_by_group(
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
    test_size: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and test with disjoint groups, stratified by label.

    One fold of a shuffled :class:`sklearn.model_selection.StratifiedGroupKFold` with
    ``round(1 / test_size)`` folds is the test set, so the test share is ``test_size`` up to group
    sizes, and each class keeps about its overall share on both sides.

    Parameters
    ----------
    labels : sequence of int
        ``(n,)`` class of each item (for regression, e.g. its quadrant).
    groups : sequence of str
        ``(n,)`` group of each item (artist, or the song itself).
    test_size : float
        Share of items in the test set, in ``(0, 0.5]``.
    seed : int
        Seed; the same seed and inputs always give the same split.

    Returns
    -------
    train_idx, test_idx : np.ndarray
        Sorted int64 indices into ``labels``.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if labels.shape != groups.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and groups {groups.shape}: need equal 1-D shapes")
    if not 0 < test_size <= 0.5:
        raise ValueError(f"test_size must be in (0, 0.5], got {test_size}")
    n_splits = max(2, round(1 / test_size))
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise StreammoodError(
            f"cannot split {len(labels)} items in {n_groups} groups into a {test_size:.0%} "
            f"test set: need at least {n_splits} groups"
        )
    if np.bincount(np.unique(labels, return_inverse=True)[1]).min() >= n_splits:
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:  # a class too small to appear in every fold: keep groups disjoint, drop stratification
        folds = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, test_idx = next(folds.split(np.zeros(len(labels)), labels, groups))
    return np.sort(train_idx).astype(np.int64), np.sort(test_idx).astype(np.int64)


def member_folds(
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
    n_members: int,
    val_size: float = 0.2,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/validation splits for the members of an ensemble, groups disjoint in each.

    With several members, a stratified group k-fold (``k = max(n_members, round(1/val_size))``)
    gives member ``i`` fold ``i`` as validation, so the ensemble learns from every song while each
    member keeps a clean validation set for early stopping; with one member, one
    :func:`split_by_group` of ``val_size``.

    Returns
    -------
    list of (train_idx, val_idx)
        ``n_members`` pairs of sorted int64 indices into ``labels``.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if n_members == 1:
        return [split_by_group(labels, groups, val_size, seed)]
    n_splits = max(n_members, round(1 / val_size))
    if len(np.unique(groups)) < n_splits:
        raise StreammoodError(
            f"cannot make {n_splits} validation folds from {len(np.unique(groups))} groups"
        )
    if np.bincount(np.unique(labels, return_inverse=True)[1]).min() >= n_splits:
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        folds = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    pairs = list(folds.split(np.zeros(len(labels)), labels, groups))[:n_members]
    return [(np.sort(tr).astype(np.int64), np.sort(va).astype(np.int64)) for tr, va in pairs]
