import numpy as np
import pytest

from streammood.datasets.fourq import read_fourq_artists, read_fourq_labels
from streammood.datasets.splits import split_by_group, train_val_test_split
from streammood.errors import StreammoodError


@pytest.fixture(scope="module")
def fourq_labels_groups(fourq_dir):
    labels = read_fourq_labels(fourq_dir)
    artists = read_fourq_artists(fourq_dir)
    songs = sorted(labels)
    return np.array([labels[s] for s in songs]), np.array([artists[s] for s in songs])


def _synthetic(n=300, n_groups=90, seed=1):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n).astype(str)
    labels = rng.integers(0, 4, n)
    return labels, groups


def _shares(labels):
    return np.bincount(labels, minlength=4) / len(labels)


def test_split_groups_disjoint_balanced_and_sized_on_4q(fourq_labels_groups):
    labels, groups = fourq_labels_groups
    train, test = split_by_group(labels, groups, test_size=0.2, seed=0)
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == len(labels)
    assert not set(groups[train]) & set(groups[test])
    assert abs(len(test) / len(labels) - 0.2) < 0.03
    assert np.abs(_shares(labels[test]) - _shares(labels)).max() < 0.03


def test_split_deterministic_by_seed():
    labels, groups = _synthetic()
    a = split_by_group(labels, groups, seed=3)
    b = split_by_group(labels, groups, seed=3)
    c = split_by_group(labels, groups, seed=4)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_train_val_test_is_seeds_80_20_80_20(fourq_labels_groups):
    labels, groups = fourq_labels_groups
    train, val, test = train_val_test_split(labels, groups, seed=0)
    parts = [train, val, test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))
    for i in range(3):
        for j in range(i + 1, 3):
            assert not set(groups[parts[i]]) & set(groups[parts[j]])
    n = len(labels)
    assert abs(len(test) / n - 0.20) < 0.03
    assert abs(len(val) / n - 0.16) < 0.03
    for part in parts:
        assert np.abs(_shares(labels[part]) - _shares(labels)).max() < 0.04


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(StreammoodError, match="groups"):
        split_by_group([0, 1, 0, 1], ["a", "a", "b", "b"], test_size=0.2)
