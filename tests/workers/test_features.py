from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from streammood.audio.decode import load_audio
from streammood.cli import app
from tests.features.parity import assert_parity

runner = CliRunner()


def test_cli_features_offline_and_stream_write_equal_arrays(fourq_clips, tmp_path: Path):
    clip = fourq_clips[3]
    outs = {}
    for mode in ("offline", "stream"):
        out = tmp_path / f"{mode}.npz"
        res = runner.invoke(app, ["features", str(clip), "--out", str(out), "--mode", mode])
        assert res.exit_code == 0, res.output
        assert f"steps ({mode})" in res.output
        outs[mode] = np.load(out)
    y, sr = load_audio(clip)
    n = math.floor(len(y) / sr / 0.5)
    off, st = outs["offline"], outs["stream"]
    assert off["mfcc"].shape == (n, 21, 20) and off["lld"].shape == (n, 260)
    assert off["lld_names"].shape == (260,) and off["lld_names"][0] == "F0final_sma_stddev"
    np.testing.assert_array_equal(off["seq"], np.arange(n))
    np.testing.assert_array_equal(off["t_start"], np.arange(n) * 0.5)
    for key in ("seq", "t_start", "lld_names", "patch_steps"):
        np.testing.assert_array_equal(off[key], st[key])
    assert_parity(st["mfcc"], off["mfcc"], "MFCC")
    assert_parity(st["lld"], off["lld"], "LLD")
    assert_parity(st["mel_patches"].reshape(-1, 96), off["mel_patches"].reshape(-1, 96), "mel")


def test_cli_features_bad_input_is_one_line(tmp_path: Path, music_clip):
    text = tmp_path / "notes.mp3"
    text.write_text("not audio")
    cases = [
        ([str(text), "--out", str(tmp_path / "a.npz")], "notes.mp3"),
        ([str(music_clip), "--out", str(tmp_path / "a.npz"), "--mode", "fast"], "unknown mode"),
        ([str(music_clip), "--out", str(tmp_path / "a.txt")], "must be a .npz"),
        ([str(music_clip), "--out", str(tmp_path / "no" / "a.npz")], "does not exist"),
    ]
    for args, needle in cases:
        res = runner.invoke(app, ["features", *args])
        assert res.exit_code == 2, res.output
        assert needle in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
