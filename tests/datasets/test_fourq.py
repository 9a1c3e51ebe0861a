"""The 4Q loader on a small folder of real clips (symlinks into ../shared/data/4q)."""

import csv
import logging

import numpy as np
import pytest

from streammood.datasets.cache import FeatureCache
from streammood.datasets.fourq import FOURQ_QUADRANT, load_fourq, read_fourq_labels
from streammood.datasets.windows import stack_windows
from streammood.errors import StreammoodError
from streammood.features.embedding import MusicnnEmbedder
from streammood.runtime.labels import QUADRANTS

EMBED_DIM = MusicnnEmbedder().dim  # the product's embedder (models/musicnn/msd_mtt_vgg.tflite)


def _rows(path):
    with open(path, newline="") as f:
        return {r["Song"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def small_fourq(tmp_path_factory, fourq_dir, fourq_clips):
    """Q1..Q4 with one real clip each, a broken MP3 in Q1, and one annotated song not on disk."""
    pytest.importorskip("streammood.features.extractor")
    root = tmp_path_factory.mktemp("4q")
    annotations = _rows(fourq_dir / "annotations.csv")
    metadata = _rows(fourq_dir / "metadata.csv")
    songs = [p.stem for p in fourq_clips]
    for clip in fourq_clips:
        (root / clip.parent.name).mkdir()
        (root / clip.parent.name / clip.name).symlink_to(clip)
    (root / "Q1" / "BROKEN0001.mp3").write_bytes(np.random.default_rng(1).bytes(30_000))
    with open(root / "annotations.csv", "w", newline="") as f:
        f.write("Song,Quadrant\n")
        for song in songs:
            f.write(f"{song},{annotations[song]['Quadrant']}\n")
        f.write("BROKEN0001,Q1\nHELDOUT0001,Q2\n")
    with open(root / "metadata.csv", "w", newline="") as f:
        f.write("Song,Artist,Title,Quadrant\n")
        for song in songs:
            m = metadata[song]
            f.write(f'{song},"{m["Artist"]}","{m["Title"]}",{m["Quadrant"]}\n')
    cache = FeatureCache(tmp_path_factory.mktemp("features"))
    return root, cache, songs, metadata


def test_load_fourq_windows_labels_groups(small_fourq, caplog):
    root, cache, songs, metadata = small_fourq
    with caplog.at_level(logging.WARNING):
        windows = load_fourq(root, cache, jobs=1, progress=False)
    assert [w.song_id for w in windows] == sorted(songs)
    for w in windows:
        assert w.mfcc.shape == (60, 21, 20) and w.lld.shape == (60, 260)
        assert w.emb.shape == (60, EMBED_DIM)
        assert w.va is None and w.t_start == 0.0
        quadrant = metadata[w.song_id]["Quadrant"]
        assert QUADRANTS[w.label] == FOURQ_QUADRANT[quadrant]
        assert w.group == metadata[w.song_id]["Artist"]
        assert w.mask.sum() == 60 - w.n_pad
    assert sorted(QUADRANTS[w.label] for w in windows) == sorted(QUADRANTS)
    # one summary line for the held-out song, one line naming the broken clip
    assert "1 of 6 annotated songs are not on disk" in caplog.text
    assert "BROKEN0001.mp3" in caplog.text
    assert cache.computed == 4 and cache.failed == 1
    out = stack_windows(windows)
    assert out["mfcc"].shape == (4, 60, 21, 20) and out["label"].tolist() == [
        w.label for w in windows
    ]


def test_second_load_uses_cache_and_groups_fall_back_to_song(small_fourq, tmp_path):
    root, cache, songs, _ = small_fourq
    first = load_fourq(root, cache, jobs=1, progress=False)
    again_cache = FeatureCache(cache.root, embedder_model=cache.embedder_model)
    # the same folder without metadata.csv: group = song
    bare = tmp_path / "bare"
    bare.mkdir()
    for q in FOURQ_QUADRANT:
        (bare / q).symlink_to(root / q)
    (bare / "annotations.csv").symlink_to(root / "annotations.csv")
    windows = load_fourq(bare, again_cache, jobs=1, progress=False)
    assert again_cache.computed == 0 and again_cache.hits == 4
    assert [w.group for w in windows] == [w.song_id for w in windows]
    for a, b in zip(first, windows, strict=True):
        np.testing.assert_array_equal(a.lld, b.lld)
        np.testing.assert_array_equal(a.emb, b.emb)


def test_labels_of_the_real_annotations(fourq_dir):
    labels = read_fourq_labels(fourq_dir)
    assert len(labels) == 720
    assert np.bincount(list(labels.values())).tolist() == [180, 180, 180, 180]


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(StreammoodError, match="not found"):
        load_fourq(tmp_path / "nope")
    with pytest.raises(StreammoodError, match="annotations.csv"):
        load_fourq(tmp_path)
    (tmp_path / "annotations.csv").write_text("Song,Mood\nA,Q1\n")
    with pytest.raises(StreammoodError, match="missing column"):
        load_fourq(tmp_path)
    (tmp_path / "annotations.csv").write_text("Song,Quadrant\nA,Q7\n")
    with pytest.raises(StreammoodError, match="Q7"):
        load_fourq(tmp_path)
    (tmp_path / "annotations.csv").write_text("Song,Quadrant\nA,Q1\n")
    with pytest.raises(StreammoodError, match="no annotated clip"):
        load_fourq(tmp_path)
