"""``streammood analyze``: offline timelines of real files, CSV/JSON and pictures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streammood.audio.decode import load_audio
from streammood.audio.framer import n_steps


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streammood", "analyze", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_analyze_two_files_to_csv_json_and_pictures(fourq_clips, shipped_model, tmp_path: Path):
    files = [str(p) for p in fourq_clips[:2]]
    csv_out, json_out, png = tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "traj.png"
    run = _analyze(*files, "--out", str(csv_out), "--plot", str(png), "--jobs", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    rows = _rows(csv_out)
    for f in files:
        y, sr = load_audio(f)
        mine = [r for r in rows if r["file"] == f]
        assert [int(r["seq"]) for r in mine] == list(range(n_steps(len(y), sr)))
        for r in mine:
            probs = [float(r[f"p_{q}"]) for q in ("AP", "AN", "PP", "PN")]
            assert abs(sum(probs) - 1) < 1e-3
            assert r["quadrant"] == ("AP", "AN", "PP", "PN")[probs.index(max(probs))]
            assert -1 <= float(r["valence"]) <= 1 and -1 <= float(r["arousal"]) <= 1
    pictures = sorted(tmp_path.glob("traj-*.png"))
    assert len(pictures) == 2 and all(p.stat().st_size > 10_000 for p in pictures)

    run = _analyze(files[0], "--out", str(json_out), "--jobs", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads(json_out.read_text())
    first = [r for r in rows if r["file"] == files[0]]
    assert len(data) == len(first)
    assert all(
        abs(d["valence"] - float(r["valence"])) < 1e-4 for d, r in zip(data, first, strict=True)
    )


def test_a_bad_file_is_named_and_the_others_still_go_through(music_clip, shipped_model, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("this is not audio")
    out = tmp_path / "t.csv"
    run = _analyze(str(bad), str(music_clip), "--out", str(out), "--jobs", "1")
    assert run.returncode == 1
    assert "notes.mp3" in run.stderr and "Traceback" not in run.stderr
    assert {r["file"] for r in _rows(out)} == {str(music_clip)}


@pytest.mark.parametrize("suffix", [".txt"])
def test_unknown_output_format_is_a_clear_error(music_clip, shipped_model, tmp_path, suffix):
    run = _analyze(str(music_clip), "--out", str(tmp_path / f"t{suffix}"), "--jobs", "1")
    assert run.returncode == 2 and "must end in .csv or .json" in run.stderr


def test_timeline_rows_carry_the_segment(long_music, fourq_clips, shipped_model, tmp_path):
    """Two real clips back to back: the rows say where each step's segment began, as listen's
    messages do (one change, near the cut; early steps flagged until the embedding is in)."""
    import csv

    from streammood.audio.decode import load_audio
    from streammood.workers.analyze import timeline_of_signal, write_timelines

    y, sr = long_music
    cut = len(load_audio(fourq_clips[0])[0]) / sr
    tl = timeline_of_signal(y, sr, shipped_model, "two.wav")
    rows = tl.rows()
    changes = [r for r in rows if r["changed"]]
    assert len(changes) == 1 and abs(changes[0]["segment_start"] - cut) <= 3.0
    assert rows[0]["segment_start"] == 0.0 and not rows[0]["embedding_ready"]
    assert rows[12]["embedding_ready"] and rows[-1]["segment_start"] == changes[0]["segment_start"]
    assert rows[-1]["segment_steps"] == round((rows[-1]["t_end"] - rows[-1]["segment_start"]) / 0.5)
    out = write_timelines([tl], tmp_path / "t.csv")
    with open(out) as fh:
        got = list(csv.DictReader(fh))
    assert {"segment_start", "segment_steps", "embedding_ready", "changed"} <= set(got[0])
    assert float(got[-1]["segment_start"]) == rows[-1]["segment_start"]


def test_two_feature_threads_give_the_same_timeline(long_music, shipped_model):
    """The timeline of ~60 s of real music is the same with the features on one or two threads
    (the CSV rows equal, every value)."""
    from streammood.workers.analyze import timeline_of_signal

    y, sr = long_music
    one = timeline_of_signal(y, sr, shipped_model, "two.wav", threads=1)
    two = timeline_of_signal(y, sr, shipped_model, "two.wav", threads=2)
    assert len(one.rows()) == 120 and one.rows() == two.rows()
    np.testing.assert_array_equal(one.probs, two.probs)


def test_one_file_in_process_uses_two_feature_threads(music_clip, shipped_model, monkeypatch):
    """``analyze_files`` of one file (one process) gives its features two threads, and the
    artifact it was given is used as is (not loaded again)."""
    import streammood.workers.analyze as analyze

    seen: list[int] = []
    extract = analyze.extract_offline

    def spy(y, sr, embedder=None, *, threads=1, detector=None):
        seen.append(threads)
        return extract(y[: 10 * sr], sr, embedder, threads=threads, detector=detector)

    monkeypatch.setattr(analyze, "extract_offline", spy)
    monkeypatch.setattr(analyze, "load_artifact", lambda *a, **k: pytest.fail("loaded again"))
    monkeypatch.setattr(analyze.os, "cpu_count", lambda: 2)
    timelines, errors = analyze.analyze_files([music_clip], shipped_model, jobs=1)
    assert not errors and len(timelines[0].t_start) == 20 and seen == [2]
