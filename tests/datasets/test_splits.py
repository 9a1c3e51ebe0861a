import numpy as np
import pytest

from streammood.datasets.fourq import read_fourq_artists, read_fourq_labels
from streammood.datasets.splits import member_folds, split_by_group
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


def test_member_folds_cover_every_song_once_as_validation(fourq_labels_groups):
    labels, groups = fourq_labels_groups
    seen, _ = split_by_group(labels, groups, 0.2, seed=0)  # the seed's 80 % train+validation
    lab, grp = labels[seen], groups[seen]
    folds = member_folds(lab, grp, n_members=5, seed=1)
    assert len(folds) == 5
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals.tolist()) == list(range(len(seen)))  # each song validates one member
    for tr, va in folds:
        assert not set(grp[tr]) & set(grp[va])  # artists never cross
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(seen)))
        assert abs(len(va) / len(seen) - 0.2) < 0.03  # the seed's 80/20
        assert np.abs(_shares(lab[va]) - _shares(lab)).max() < 0.05
    one = member_folds(lab, grp, n_members=1, val_size=0.2, seed=1)
    assert len(one) == 1 and abs(len(one[0][1]) / len(seen) - 0.2) < 0.03


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(StreammoodError, match="groups"):
        split_by_group([0, 1, 0, 1], ["a", "a", "b", "b"], test_size=0.2)
