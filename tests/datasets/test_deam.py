"""DEAM loader on the real DEAM layout and annotation files in ../shared/data/deam-sample."""

import csv
import logging
import shutil

import numpy as np
import pytest

from streammood.datasets.deam import (
    AUDIO_DIR,
    DEAM_START_STEP,
    DYNAMIC_DIR,
    SONG_LEVEL_DIR,
    STATIC_FILES,
    check_static_swap,
    dynamic_window,
    read_dynamic,
    read_static,
    resolve_static,
    static_to_unit,
)
from streammood.errors import StreammoodError
from streammood.features.embedding import MusicnnEmbedder

EMBED_DIM = MusicnnEmbedder().dim  # the product's embedder (models/musicnn/msd_mtt_vgg.tflite)


@pytest.fixture(scope="module")
def annotations(deam_dir):
    times, dynamic = read_dynamic(deam_dir)
    return read_static(deam_dir), times, dynamic


@pytest.fixture(scope="module")
def emomusic(deam_dir):
    """emoMusic's published static means: song → (valence, arousal) on the 1–9 scale."""
    with open(deam_dir / "emomusic_static_annotations.csv", newline="") as f:
        return {
            int(r["song_id"]): (float(r["mean_valence"]), float(r["mean_arousal"]))
            for r in csv.DictReader(f)
        }


def test_static_headers_with_spaces_and_both_files(annotations, deam_dir):
    static, _, _ = annotations
    assert len(static) == 1802
    # 2000_2058 file: "song_id, valence_mean, valence_std, ..." with CRLF line ends
    assert static[2001].valence == 3.2 and static[2001].arousal == 6.6
    assert static[2001].file == STATIC_FILES[1]
    assert static[2].valence == 3.1 and static[2].arousal == 3.0
    assert static[2].file == STATIC_FILES[0]


def test_dynamic_labels_align_with_the_step_that_ends_at_the_label_time(annotations, deam_dir):
    _, times, dynamic = annotations
    assert times[0] == 15000 and len(dynamic) == 744
    assert DEAM_START_STEP == 29  # t_start 14.5 s, t_end 15.0 s
    folder = deam_dir / DYNAMIC_DIR
    with open(folder / "valence.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["song_id"] == "2")
    window = dynamic_window(times, dynamic[2])
    assert window.shape == (60, 2)
    # label k belongs to step 29 + k, whose end is 15.0 + 0.5 k s = T
    for k in (0, 1, 59):
        t_end_ms = (DEAM_START_STEP + k + 1) * 500
        assert window[k, 0] == np.float32(float(row[f"sample_{t_end_ms}ms"]))
    assert window[-1, 0] != np.float32(float(row["sample_45000ms"]))


def test_dynamic_window_needs_all_60_labels():
    times = np.arange(15000, 40000, 500)
    assert dynamic_window(times, np.zeros((len(times), 2))) is None
    times = np.arange(15000, 45500, 500)
    values = np.zeros((len(times), 2))
    values[10, 1] = np.nan
    assert dynamic_window(times, values) is None


def test_swap_detected_in_deam_static_file_for_2013_part(annotations, caplog):
    static, _, dynamic = annotations
    checks = check_static_swap(static, dynamic)
    assert len(checks) == 1  # only the 2013 part has dynamic annotations in the sample
    (c,) = checks
    assert (c.file, c.part, c.n_checked) == (STATIC_FILES[0], "2013", 744)
    assert c.swapped and c.n_swapped_better > 500 and c.err_swapped < c.err_straight / 2
    with caplog.at_level(logging.WARNING):
        resolve_static(static, dynamic)
    assert "swapped" in caplog.text and STATIC_FILES[0] in caplog.text and "744" in caplog.text


def test_resolved_static_agrees_with_emomusic_and_dynamic(annotations, emomusic):
    static, _, dynamic = annotations
    labels, _ = resolve_static(static, dynamic)
    songs = sorted(emomusic)
    ours = np.array([labels[s] for s in songs])
    theirs = static_to_unit(np.array([emomusic[s] for s in songs]))
    assert np.mean(np.all(np.abs(ours - theirs) < 1e-6, axis=1)) > 0.95
    dyn_means = np.array([np.nanmean(dynamic[s], axis=0) for s in songs])
    for axis in range(2):
        assert np.corrcoef(ours[:, axis], dyn_means[:, axis])[0, 1] > 0.9
    # parts without dynamic annotations are left as read
    assert labels[2001].tolist() == pytest.approx(static_to_unit([3.2, 6.6]).tolist())


def test_unswapped_static_file_is_not_flagged(tmp_path, deam_dir, emomusic):
    """A copy of the layout whose static file carries emoMusic's (straight) values."""
    (tmp_path / SONG_LEVEL_DIR).mkdir(parents=True)
    shutil.copytree(deam_dir / DYNAMIC_DIR, tmp_path / DYNAMIC_DIR)
    with open(tmp_path / SONG_LEVEL_DIR / STATIC_FILES[0], "w") as f:
        f.write("song_id, valence_mean, valence_std, arousal_mean, arousal_std\n")
        for song, (v, a) in sorted(emomusic.items()):
            f.write(f"{song}, {v}, 1.0, {a}, 1.0\n")
    times, dynamic = read_dynamic(tmp_path)
    static = read_static(tmp_path)
    (c,) = check_static_swap(static, dynamic)
    assert not c.swapped and c.err_straight < c.err_swapped
    labels, _ = resolve_static(static, dynamic)
    assert labels[2] == pytest.approx(static_to_unit(np.array(emomusic[2])))


def test_missing_annotation_files_are_clear_errors(tmp_path):
    (tmp_path / AUDIO_DIR).mkdir()
    with pytest.raises(StreammoodError, match="static annotation"):
        read_static(tmp_path)
    with pytest.raises(StreammoodError, match="valence.csv"):
        read_dynamic(tmp_path)


# --- the loader, on real audio ----------------------------------------------------------------

DEAM_SONGS = (2, 3, 7)


@pytest.fixture(scope="module")
def small_deam(tmp_path_factory, deam_dir):
    """DEAM's layout with three of the sample's songs (symlinks) and the real annotations."""
    pytest.importorskip("streammood.features.extractor")
    from streammood.datasets.cache import FeatureCache

    root = tmp_path_factory.mktemp("deam")
    (root / AUDIO_DIR).mkdir()
    for song in DEAM_SONGS:
        (root / AUDIO_DIR / f"{song}.mp3").symlink_to(deam_dir / AUDIO_DIR / f"{song}.mp3")
    (root / "annotations").symlink_to(deam_dir / "annotations")
    (root / "songs_info.csv").symlink_to(deam_dir / "songs_info.csv")
    return root, FeatureCache(tmp_path_factory.mktemp("features"))


def test_load_deam_dynamic_windows_are_aligned(small_deam, annotations):
    from streammood.datasets.deam import load_deam

    root, cache = small_deam
    _, times, dynamic = annotations
    windows = load_deam(root, "dynamic", cache, jobs=1, progress=False)
    assert [w.song_id for w in windows] == [str(s) for s in DEAM_SONGS]
    for w in windows:
        assert w.t_start == 14.5 and w.n_pad == 0  # step 29 ends at 15.0 s
        assert w.mfcc.shape == (60, 21, 20) and w.lld.shape == (60, 260)
        assert w.emb.shape == (60, EMBED_DIM) and w.va.shape == (60, 2)
        np.testing.assert_array_equal(w.va, dynamic_window(times, dynamic[int(w.song_id)]))
        v, a = w.va.mean(axis=0)
        assert w.label == (2 * (a <= 0) + (v <= 0))
    assert windows[0].group == "The New Mystikal Troubadours"
    assert cache.computed == len(DEAM_SONGS)


def test_load_deam_static_uses_swap_corrected_values(small_deam, emomusic, caplog):
    from streammood.datasets.deam import load_deam

    root, cache = small_deam
    with caplog.at_level(logging.WARNING):
        windows = load_deam(root, "static", cache, jobs=1, progress=False)
    assert "look swapped" in caplog.text
    assert cache.computed <= len(DEAM_SONGS)  # each clip extracted once across both tasks
    for w in windows:
        expected = static_to_unit(np.array(emomusic[int(w.song_id)]))
        np.testing.assert_allclose(w.va, expected, atol=1e-6)
        assert w.t_start == 14.5 and w.va.shape == (2,)


def test_load_deam_bad_task(small_deam):
    from streammood.datasets.deam import load_deam

    with pytest.raises(StreammoodError, match="task"):
        load_deam(small_deam[0], "both")
