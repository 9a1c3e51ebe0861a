"""Streaming evaluation: joined playlists, their truth, the stream figures, and a real run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streammood.layout import STEP_SECONDS
from streammood.training.streams import (
    STREAM_RATE,
    StreamResult,
    join_songs,
    playlists,
    stream_report,
)


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * STREAM_RATE)) / STREAM_RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_hard_cuts_keep_every_sample_and_mark_the_cuts():
    a, b = _tone(10.0, 220), _tone(7.0, 440)
    s = join_songs([(a, STREAM_RATE), (b, STREAM_RATE)], [0, 3], ["a", "b"], gain_db=(0, 0))
    assert len(s.y) == len(a) + len(b)
    np.testing.assert_array_equal(s.y[: len(a)], a)
    np.testing.assert_array_equal(s.starts, [0.0, 10.0])
    labels = s.step_labels(34)
    assert list(labels[:20]) == [0] * 20 and list(labels[20:]) == [3] * 14
    since = s.since_change(34)
    assert since[0] == STEP_SECONDS and since[19] == 10.0 and since[20] == STEP_SECONDS


def test_crossfade_overlaps_and_changes_in_its_middle():
    a, b = _tone(10.0, 220), _tone(10.0, 440)
    s = join_songs(
        [(a, STREAM_RATE), (b, STREAM_RATE)], [1, 2], ["a", "b"], xfade=4.0, gain_db=(-6, -6)
    )
    assert len(s.y) == len(a) + len(b) - 4 * STREAM_RATE
    assert s.starts[1] == pytest.approx(8.0)
    g = 10 ** (-6 / 20)
    np.testing.assert_allclose(s.y[: 6 * STREAM_RATE], g * a[: 6 * STREAM_RATE], atol=1e-6)
    np.testing.assert_allclose(s.y[-STREAM_RATE:], g * b[-STREAM_RATE:], atol=1e-6)
    assert np.all(s.gains_db == -6)


def test_playlists_are_seeded_and_cover_every_song():
    songs = [f"s{i}" for i in range(30)]
    a, b = playlists(songs, seed=3, per_stream=12), playlists(songs, seed=3, per_stream=12)
    assert a == b and [len(p) for p in a] == [12, 12, 6]
    assert sorted(s for p in a for s in p) == sorted(songs)
    assert playlists(songs, seed=4) != a


def _result(labels, starts, pred, changes, n):
    s = join_songs(
        [
            (np.zeros(int((e - b) * STREAM_RATE), np.float32), STREAM_RATE)
            for b, e in zip(starts, list(starts[1:]) + [n * STEP_SECONDS], strict=True)
        ],
        labels,
        [str(i) for i in range(len(labels))],
        gain_db=(0, 0),
    )
    probs = np.eye(4, dtype=np.float32)[pred]
    z = np.zeros(n, np.float32)
    return StreamResult(s, probs, z, z, np.ones(n, int), np.zeros(n), np.asarray(changes, float))


def test_stream_report_counts_follow_times_and_changes():
    n = 120  # 60 s: song 0 (AP) 0-30 s, song 1 (PN) 30-60 s
    pred = np.zeros(n, int)
    pred[66:] = 3  # right from the step ending at 33.5 s (steps 60..65 still say AP)
    r = stream_report([_result([0, 3], [0.0, 30.0], pred, [31.0, 45.0], n)])
    assert r["follow"] == {"median_s": 3.5, "mean_s": 3.5, "n": 1, "of": 1}
    ch = r["changes"]
    assert (ch["true"], ch["detected"], ch["precision"], ch["recall"]) == (1, 2, 0.5, 1.0)
    assert ch["false_per_hour"] == pytest.approx(1 / (60 / 3600))
    acc = r["accuracy_since_change"]
    assert acc["0-5"]["steps"] == 20 and acc["0-5"]["accuracy"] == pytest.approx(14 / 20)
    assert acc["5-10"]["accuracy"] == 1.0
    assert r["per_step"]["accuracy"] == pytest.approx(1 - 6 / n)
    json.dumps(r)


def test_a_song_that_ends_wrong_has_no_follow_time():
    n = 120
    pred = np.zeros(n, int)  # never follows to PN
    r = stream_report([_result([0, 3], [0.0, 30.0], pred, [], n)])
    assert r["follow"]["n"] == 0 and r["follow"]["of"] == 1 and r["follow"]["median_s"] is None
    assert r["changes"]["recall"] == 0.0 and r["changes"]["precision"] is None


@pytest.mark.slow
def test_evaluate_streams_on_real_clips(fourq_dir, shipped_model, tmp_path):
    """Four real clips as one stream: the change-aware window finds the cuts and follows them
    faster than the fixed window; both reports and the timeline PNG are written."""
    from streammood.training.streams import evaluate_streams, fourq_songs

    paths, labels = fourq_songs(fourq_dir)
    songs = [sorted(s for s in labels if labels[s] == q)[0] for q in range(4)]
    result = evaluate_streams(
        shipped_model, songs, paths, labels, tmp_path, seed=1, jobs=1, progress=False
    )
    assert result["streams"] == 1 and result["songs"] == 4
    fixed, aware = result["fixed_window"], result["change_aware"]
    assert fixed["changes"]["detected"] == 0
    assert aware["changes"]["recall"] > 0 and aware["changes"]["precision"] > 0
    assert aware["per_step"]["accuracy"] >= fixed["per_step"]["accuracy"]
    assert result["detector"]["lookahead_s"] == 3.0
    assert 0 < result["detector"]["cpu_ms_per_step"] < 5
    assert (tmp_path / result["timeline"]).stat().st_size > 10_000


def test_the_card_shows_stream_figures():
    """A manifest with stream figures renders the streams section (both windows, both runs)."""
    from streammood.training.card import _stream_lines

    n = 120
    pred = np.zeros(n, int)
    pred[66:] = 3
    rep = stream_report([_result([0, 3], [0.0, 30.0], pred, [31.0], n)])
    run = {
        "xfade_s": 0.0,
        "songs": 2,
        "streams": 1,
        "gain_db": [-10.0, 0.0],
        "fixed_window": rep,
        "change_aware": rep,
        "timeline": "stream_timeline.png",
        "detector": {"lookahead_s": 3.5, "cpu_ms_per_step": 0.12},
    }
    lines = "\n".join(_stream_lines({"hard_cuts": run, "xfade_4s": {**run, "xfade_s": 4.0}}))
    assert "## On streams" in lines
    assert "| | hard cuts, fixed | hard cuts, change-aware | 4 s crossfades, fixed |" in lines
    assert "| median time to follow a change, s | 3.5 | 3.5 | 3.5 | 3.5 |" in lines
    assert "look-ahead 3.5 s, 0.12 ms" in lines and "`report/stream_timeline.png`" in lines
    assert _stream_lines({}) == []
