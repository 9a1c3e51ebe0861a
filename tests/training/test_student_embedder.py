"""The student embedder: its distillation patches are the live path's, it learns the teacher's
outputs, and its LiteRT export is what serving computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from streammood.audio.decode import load_audio  # noqa: E402
from streammood.audio.resample import resample  # noqa: E402
from streammood.features.embedding import MSD_MTT_VGG_TFLITE, MusicnnEmbedder  # noqa: E402
from streammood.features.mel import MelPatcher, mel_patches_offline  # noqa: E402
from streammood.layout import MEL_RATE  # noqa: E402
from streammood.training import student_embedder as se  # noqa: E402


def test_distillation_steps_are_the_first_six_then_every_other() -> None:
    assert se.distillation_steps(12).tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 10]
    assert se.distillation_steps(3).tolist() == [0, 1, 2]
    assert se.distillation_steps(0).tolist() == []


@pytest.mark.data
def test_distillation_patches_are_the_live_patches(music_clip: Path) -> None:
    y, sr = load_audio(music_clip)
    y16 = resample(y, sr, MEL_RATE)[: 12 * 8000 + 300]
    steps, patches = se.distillation_patches(y16)
    assert steps.tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 10]
    live = MelPatcher(every_step=True)
    pushed = dict(live.push(y16[:50_000]) + live.push(y16[50_000:]))
    for seq, patch in zip(steps, patches, strict=True):
        np.testing.assert_allclose(patch, pushed[int(seq)], rtol=1e-5, atol=1e-5)
    offline_steps, offline = mel_patches_offline(y16)  # the scheduled ones: 0, 5, 10
    for seq, patch in zip(offline_steps, offline, strict=True):
        np.testing.assert_array_equal(patch, patches[steps.tolist().index(int(seq))])


@pytest.mark.data
def test_a_student_learns_the_teacher_and_serves_as_the_embedder(
    fourq_clips: list[Path], tmp_path: Path
) -> None:
    teacher = MusicnnEmbedder(MSD_MTT_VGG_TFLITE)
    patches, targets, songs = [], [], []
    for clip in fourq_clips[:4]:
        y, sr = load_audio(clip)
        _, p = se.distillation_patches(resample(y, sr, MEL_RATE)[: 16 * 8000])
        patches.append(p)
        targets.append(se.teacher_targets(teacher, p))
        songs += [clip.stem] * len(p)
    x, t = np.concatenate(patches), np.concatenate(targets)
    assert t.shape == (len(x), teacher.dim)

    model, summary = se.train_student(
        x.astype(np.float16), t, np.array(songs), epochs=6, batch=16, val_fraction=0.25
    )
    assert summary["train_patches"] + summary["val_patches"] == len(x)
    assert summary["val_songs"] == 1
    assert summary["loss"][-1] < summary["loss"][0]  # it learns
    assert 1 <= summary["best_epoch"] <= 6

    path = se.save_student(model, tmp_path / "student.tflite")
    student = MusicnnEmbedder(path)
    assert student.dim == teacher.dim
    served = student.embed(x[:5])
    np.testing.assert_allclose(served, model.predict(x[:5], verbose=0), rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(served))
