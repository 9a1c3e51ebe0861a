#!/usr/bin/env python
"""Distil the pretrained embedder into the small student CNN of
:mod:`streammood.training.student_embedder` (TensorFlow).

Teacher outputs are computed on dense log-mel patches of the training songs (never the test
songs of ``--exclude-test-of``'s split, so the figures measured on them stay honest) and kept in
``--targets`` for reruns; the student is written as a LiteRT file with a JSON summary beside it.

Usage::

    .venv/bin/python scripts/distill_embedder.py --data-dir ../shared/data/4q \
        --extra-dir ../shared/data/deam-sample/MEMD_audio --exclude-test-of models/streammood-4q \
        --targets .cache/distill/targets.npz --out models/student/embedder.tflite
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

_TEACHER = None


def _init(teacher_path: str) -> None:
    global _TEACHER
    from streammood.features.embedding import MusicnnEmbedder

    _TEACHER = MusicnnEmbedder(teacher_path, num_threads=1)


def _song(path: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    from streammood.audio.decode import load_audio
    from streammood.audio.resample import resample
    from streammood.layout import MEL_RATE
    from streammood.training.student_embedder import distillation_patches, teacher_targets

    y, sr = load_audio(path)
    steps, patches = distillation_patches(resample(y, sr, MEL_RATE))
    return path, steps, patches.astype(np.float16), teacher_targets(_TEACHER, patches)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )


def collect_targets(paths: Sequence[Path], teacher: Path, jobs: int) -> dict[str, np.ndarray]:
    """Dense patches of ``paths`` and the teacher's outputs for them (``patches`` float16
    ``(n, 187, 96)``, ``targets`` ``(n, D)``, ``songs`` and ``steps`` ``(n,)``)."""
    patches, targets, songs, steps = [], [], [], []
    with (
        _progress() as bar,
        ProcessPoolExecutor(jobs, initializer=_init, initargs=(str(teacher),)) as pool,
    ):
        task = bar.add_task("teacher outputs", total=len(paths), info="")
        for path, s, p, t in pool.map(_song, [str(p) for p in paths]):
            patches.append(p)
            targets.append(t)
            songs += [Path(path).stem] * len(s)
            steps.append(s)
            bar.update(task, advance=1, info=f"{sum(len(x) for x in steps)} patches")
    return {
        "patches": np.concatenate(patches),
        "targets": np.concatenate(targets),
        "songs": np.array(songs),
        "steps": np.concatenate(steps),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Distil the embedder into a student LiteRT file."""
    from streammood.features.embedding import MSD_MTT_VGG_TFLITE

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="4Q folder (Q1..Q4/*.mp3)")
    parser.add_argument(
        "--extra-dir",
        type=Path,
        action="append",
        default=[],
        help="more audio (*.mp3) to distil on, e.g. the DEAM sample",
    )
    parser.add_argument(
        "--exclude-test-of",
        type=Path,
        default=None,
        help="model folder whose manifest's test songs are left out",
    )
    parser.add_argument(
        "--teacher", type=Path, default=MSD_MTT_VGG_TFLITE, help="teacher LiteRT file"
    )
    parser.add_argument(
        "--targets",
        type=Path,
        required=True,
        help="teacher outputs (.npz): reused when present, written otherwise",
    )
    parser.add_argument("--out", type=Path, required=True, help="student LiteRT file to write")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    if args.targets.is_file():
        data = dict(np.load(args.targets))
    else:
        excluded: set[str] = set()
        if args.exclude_test_of is not None:
            manifest = json.loads((args.exclude_test_of / "manifest.json").read_text())
            excluded = set(manifest["training"]["test_songs"])
        paths = [p for p in sorted(args.data_dir.glob("Q*/*.mp3")) if p.stem not in excluded]
        for extra in args.extra_dir:
            paths += sorted(extra.glob("*.mp3"))
        data = collect_targets(paths, args.teacher, args.jobs)
        args.targets.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.targets, **data)
    from streammood.training.student_embedder import save_student, train_student

    with _progress() as bar:
        task = bar.add_task("student epochs", total=args.epochs, info="")

        def hook(epoch: int, total: int, logs: dict[str, float]) -> None:
            bar.update(
                task, completed=epoch, info=f"loss {logs['loss']:.3f}  val {logs['val_loss']:.3f}"
            )

        model, summary = train_student(
            data["patches"],
            data["targets"],
            data["songs"],
            epochs=args.epochs,
            seed=args.seed,
            hook=hook,
        )
    path = save_student(model, args.out)
    summary.update(songs=len(np.unique(data["songs"])), teacher=str(args.teacher))
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{path}: student of {args.teacher.name}, validation R² {summary['val_r2']:.3f} "
        f"(best epoch {summary['best_epoch']} of {args.epochs})"
    )


if __name__ == "__main__":
    main()
