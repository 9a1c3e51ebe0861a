"""The ``train`` and ``evaluate`` jobs: data set → split → ensemble → artifact → report.

Each job returns a JSON-able summary; the CLI only prints it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streammood.datasets.cache import DEFAULT_CACHE_ROOT, FeatureCache
from streammood.datasets.splits import member_folds, split_by_group
from streammood.datasets.windows import stack_windows
from streammood.errors import StreammoodError
from streammood.runtime.artifact import ModelArtifact, load_artifact
from streammood.runtime.labels import QUADRANTS, quadrant_index, va_from_probs
from streammood.training import metrics, plots
from streammood.training.card import write_model_card
from streammood.training.config import FEATURES_NOTE, TrainConfig

# TensorFlow (streammood.training.train) is imported only after feature extraction: openSMILE's
# SMILEapi crashes in a process that has loaded TensorFlow.

DATASETS = ("4q", "deam")


def subset(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """The windows ``idx`` of stacked arrays."""
    return {k: v[idx] for k, v in arrays.items()}


def describe_split(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, Any]:
    labels = arrays["label"][idx]
    return {
        "songs": int(len(idx)),
        "groups": int(len(set(arrays["group"][idx]))),
        "per_class": {q: int(np.sum(labels == i)) for i, q in enumerate(QUADRANTS)},
    }


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def feature_cache(cache_dir: Path | None, embedder: Path | None = None) -> FeatureCache:
    """The feature cache in ``cache_dir`` (default :data:`DEFAULT_CACHE_ROOT`) whose embeddings
    come from the LiteRT file ``embedder`` (default: the shipped model's embedder)."""
    return FeatureCache(cache_dir or DEFAULT_CACHE_ROOT, embedder or "auto")


def load_dataset(
    dataset: str,
    data_dir: Path,
    task: str,
    cache_dir: Path | None,
    jobs: int | None,
    embedder: Path | None = None,
) -> dict[str, np.ndarray]:
    """Stacked windows of a data set (features from the cache, extracted in parallel, with the
    embeddings of ``embedder``: see :func:`feature_cache`)."""
    cache = feature_cache(cache_dir, embedder)
    if dataset == "4q":
        if task != "classification":
            raise StreammoodError(
                "the 4q data set has quadrant labels only: use --task classification"
            )
        from streammood.datasets.fourq import load_fourq

        windows = load_fourq(data_dir, cache=cache, jobs=jobs)
    elif dataset == "deam":
        from streammood.datasets.deam import load_deam

        kind = "static" if task == "classification" else "dynamic"
        windows = load_deam(data_dir, task=kind, cache=cache, jobs=jobs)
    else:
        raise StreammoodError(f"unknown data set {dataset!r} (choose from {', '.join(DATASETS)})")
    if not windows:
        raise StreammoodError(f"{data_dir}: no labelled audio found for data set {dataset}")
    arrays = stack_windows(windows)
    if np.any(arrays["label"] < 0) and "va" in arrays:  # label from valence/arousal
        va = arrays["va"] if arrays["va"].ndim == 2 else arrays["va"].mean(axis=1)
        arrays["label"] = quadrant_index(va[:, 0], va[:, 1])
    return arrays


@contextmanager
def _epoch_progress(console: Console) -> Iterator[Any]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, int] = {}

        def hook(name: str, epoch: int, total: int, logs: dict[str, float]) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(f"training {name}", total=total, info="")
            info = " ".join(f"{k}={v:.3f}" for k, v in logs.items() if "loss" in k or "acc" in k)
            progress.update(tasks[name], completed=epoch, info=info)

        yield hook
        for task_id in tasks.values():  # early-stopped members: show them as done
            progress.update(task_id, total=progress.tasks[task_id].completed)


def _report(
    arrays: dict[str, np.ndarray], outputs: np.ndarray, task: str, out: Path, title: str
) -> dict[str, Any]:
    """Metrics per window (song) and per step, plus pictures, for one set of windows.

    ``metrics.json`` holds the per-window figures at the top level (``accuracy``, ``macro_f1``,
    ``per_class``, ``roc_auc``, ``confusion_matrix``; MAE/RMSE for regression) and both levels
    under ``per_window`` and ``per_step``.
    """
    out.mkdir(parents=True, exist_ok=True)
    mask = arrays["mask"]
    last = outputs[np.arange(len(outputs)), metrics.last_real_step(mask)]
    if task == "classification":
        report = metrics.evaluation_report(outputs, mask, y_true=arrays["label"])
        cm = report["per_window"]["confusion_matrix"]
        va_pred = va_from_probs(last)
    else:
        va = arrays["va"]
        kwargs = (
            {"va_true_steps": va, "va_true": va.mean(axis=1)} if va.ndim == 3 else {"va_true": va}
        )
        report = metrics.evaluation_report(outputs, mask, **kwargs)
        cm = report["per_window"]["quadrant_confusion_matrix"]
        va_pred = last
    report = {**report["per_window"], **report}
    plots.plot_confusion_matrix(
        np.array(cm), out / "confusion_matrix.png", title=f"{title}: per song"
    )
    plots.plot_va_plane(va_pred, out / "va_plane.png", labels=arrays["label"], title=title)
    write_json(out / "metrics.json", report)
    return report


STREAM_XFADES = (0.0, 4.0)
"""Crossfades the model card's stream figures are measured with, s (0: hard cuts)."""


def stream_figures(
    artifact: ModelArtifact,
    data_dir: Path,
    songs: list[str],
    report_dir: Path,
    *,
    cache_dir: Path | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """``songs`` (4Q) played as streams with each of :data:`STREAM_XFADES` through the live path
    (:func:`~streammood.training.streams.evaluate_streams`): ``{"hard_cuts": ..., "xfade_4s":
    ...}``, timelines in ``report_dir``."""
    from streammood.training.streams import evaluate_streams, fourq_songs

    paths, labels = fourq_songs(Path(data_dir))
    report_dir.mkdir(parents=True, exist_ok=True)
    return {
        ("hard_cuts" if not x else f"xfade_{x:g}s"): evaluate_streams(
            artifact,
            sorted(songs),
            paths,
            labels,
            report_dir,
            xfade=x,
            cache_dir=(Path(cache_dir).parent if cache_dir else Path(".cache")) / "streams",
            jobs=jobs,
        )
        for x in STREAM_XFADES
    }


def record_stream_figures(folder: Path, figures: dict[str, Any], command: str) -> None:
    """Put stream figures into an artifact's manifest (``metrics.stream``; checksums unchanged)
    and write its card again."""
    from streammood.runtime.artifact import MANIFEST

    path = Path(folder) / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.setdefault("metrics", {})["stream"] = figures
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    write_model_card(Path(folder), load_artifact(folder).manifest, command)


def run_train(
    dataset: str,
    data_dir: Path,
    out: Path,
    config: TrainConfig,
    *,
    name: str | None = None,
    version: str = "1",
    cache_dir: Path | None = None,
    jobs: int | None = None,
    console: Console | None = None,
    command: str | None = None,
    streams: bool = False,
    embedder: Path | None = None,
) -> dict[str, Any]:
    """Train an ensemble, evaluate it on the held-out test songs, write the artifact and its
    model card (``README.md``, with ``command`` as the way to reproduce it) to ``out``. With
    ``streams`` (4Q) the held-out model also plays the test songs as streams
    (:func:`stream_figures`: hard cuts and 4 s crossfades), figures in the manifest and card.
    ``embedder`` is the LiteRT embedder the features (and the artifact) use, by default the
    shipped model's."""
    console = console or Console(stderr=True)
    embedder = feature_cache(cache_dir, embedder).embedder_model
    if embedder is None:
        raise StreammoodError("no embedder model: pass one (the shipped model's is missing)")
    arrays = load_dataset(dataset, Path(data_dir), config.task, cache_dir, jobs, embedder)
    if config.test_size > 0:
        seen_idx, test_idx = split_by_group(
            arrays["label"], arrays["group"], config.test_size, config.split_seed
        )
    else:  # every song for training and validation (no test figures)
        seen_idx, test_idx = np.arange(len(arrays["label"])), np.zeros(0, np.int64)
    seen = subset(arrays, seen_idx)
    folds = member_folds(
        seen["label"], seen["group"], len(config.seeds), config.val_size, config.split_seed + 1
    )
    console.print(
        f"{dataset}: {len(arrays['label'])} songs, {len(set(arrays['group']))} groups → "
        f"train+validation {len(seen_idx)} / test {len(test_idx)} (group-disjoint); "
        f"{len(config.seeds)} members, each validating on its own fold of "
        f"~{len(folds[0][1])} songs"
    )
    from streammood.training.train import (
        distill_student,
        export_artifact,
        predict_windows,
        train_ensemble,
    )

    with _epoch_progress(console) as hook:
        members, summaries = train_ensemble(seen, folds, config, hook)
        student, student_summary = None, None
        if config.distill and len(members) > 1:
            student, student_summary = distill_student(members, summaries, seen, config, hook)
    out = Path(out)
    distilled = student is not None
    shipped = [student] if distilled else members
    report: dict[str, Any] = {}
    ensemble_report: dict[str, Any] = {}
    if len(test_idx):
        test = subset(arrays, test_idx)
        report = _report(test, predict_windows(shipped, test), config.task, out / "report", "test")
        if distilled:
            ensemble_report = _report(
                test,
                predict_windows(members, test),
                config.task,
                out / "report" / "ensemble",
                "test, teacher ensemble",
            )
    stream_result: dict[str, Any] = {}
    if streams and dataset == "4q" and len(test_idx):
        import shutil
        import tempfile

        from streammood.training.train import export_artifact as _export

        held = Path(tempfile.mkdtemp(prefix=".heldout-", dir=Path(out).parent))
        try:
            _export(shipped, held, embedder, name="heldout", version="0", extra={})
            stream_result = stream_figures(
                load_artifact(held),
                Path(data_dir),
                arrays["song_id"][test_idx].tolist(),
                out / "report",
                cache_dir=cache_dir,
                jobs=jobs,
            )
        finally:
            shutil.rmtree(held, ignore_errors=True)
        for key, fig in stream_result.items():
            console.print(f"[bold]{key}[/bold]: " + _stream_summary(fig))
    refitted: list[dict[str, Any]] = []
    if config.refit and len(test_idx):
        from streammood.training.train import refit_all

        console.print(
            f"refitting the shipped model on all {len(arrays['label'])} songs "
            "(test figures above are its held-out twin's)"
        )
        with _epoch_progress(console) as hook:
            shipped, refitted = refit_all(
                members,
                summaries,
                arrays,
                config,
                hook,
                distilled=distilled,
                holdout=[seen_idx[va] for _, va in folds],
            )
    shipped_idx = np.arange(len(arrays["label"])) if refitted else seen_idx
    extra = {
        "training": {
            "dataset": dataset,
            "data_dir": str(data_dir),
            "features": FEATURES_NOTE,
            "split": {
                "method": "group-disjoint (artist where known, else song), stratified, seeded",
                "seed": config.split_seed,
                "train+validation": describe_split(arrays, seen_idx),
                "validation (member 0's fold)": describe_split(seen, folds[0][1]),
                "test": describe_split(arrays, test_idx),
                "members": "each member validates (early stopping) on its own group-disjoint "
                f"fold of the train+validation songs ({len(folds)} folds)",
            },
            "seen_songs": sorted(arrays["song_id"][shipped_idx].tolist()),
            "test_songs": sorted(arrays["song_id"][test_idx].tolist()),
            "members": summaries,
            **({"student": student_summary} if distilled else {}),
            **({"refit": refitted} if refitted else {}),
            "config": {k: v for k, v in config.__dict__.items() if k not in ("model",)},
        },
        "metrics": {
            "test": report,
            **({"test_ensemble": ensemble_report} if distilled else {}),
            **({"stream": stream_result} if stream_result else {}),
        },
    }
    export_artifact(
        shipped,
        out,
        embedder,
        name=name or f"streammood-{dataset}",
        version=version,
        extra=extra,
    )
    write_model_card(out, load_artifact(out).manifest, command or "streammood train ...")
    return {
        "artifact": str(out),
        "members": summaries,
        "test": report,
        **({"student": student_summary, "test_ensemble": ensemble_report} if distilled else {}),
        **({"refit": refitted} if refitted else {}),
    }


def _stream_summary(fig: dict[str, Any]) -> str:
    a, f = fig["change_aware"], fig["fixed_window"]
    return (
        f"stream macro-F1 {a['per_step']['macro_f1']:.3f} (fixed window "
        f"{f['per_step']['macro_f1']:.3f}), follow {a['follow']['median_s']} s, "
        f"false changes {a['changes']['false_per_hour']:.1f}/h"
    )


def run_evaluate(
    dataset: str,
    data_dir: Path,
    report_dir: Path,
    model: Path | None = None,
    *,
    include_seen: bool = False,
    test_split: bool = False,
    stream: bool = False,
    xfade: float = 0.0,
    stream_seed: int = 0,
    cache_dir: Path | None = None,
    jobs: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Evaluate a model artifact on a data set; songs it was trained or validated on are left
    out unless ``include_seen``; ``test_split`` keeps only the songs of the artifact's recorded
    test split (its held-out twin's). With ``stream`` the same songs are also played back to
    back (seeded order, ``xfade`` s crossfades, random gains) through the live path, with the
    fixed and the change-aware window (:mod:`streammood.training.streams`): ``report["stream"]``
    and ``stream_timeline*.png``."""
    console = console or Console(stderr=True)
    artifact: ModelArtifact = load_artifact(model)
    if stream and dataset != "4q":
        raise StreammoodError("--stream needs song-level quadrant labels: use --dataset 4q")
    arrays = load_dataset(
        dataset, Path(data_dir), artifact.task, cache_dir, jobs, artifact.file("embedder")
    )
    training = artifact.manifest.get("training", {})
    seen = set(training.get("seen_songs", []))
    test_songs = set(training.get("test_songs", []))
    if test_split and not test_songs:
        raise StreammoodError(f"{artifact.name}: its manifest records no test split")
    keep = np.array(
        [
            (include_seen or s not in seen) and (not test_split or s in test_songs)
            for s in arrays["song_id"]
        ]
    )
    if not keep.any():
        raise StreammoodError(
            f"{data_dir}: every song was used to train {artifact.name}; pass --include-seen"
        )
    console.print(
        f"evaluating {artifact.name} v{artifact.version} on {int(keep.sum())} songs"
        + (f" ({int((~keep).sum())} seen in training left out)" if (~keep).any() else "")
    )
    if test_split and seen & test_songs:
        console.print(
            f"[yellow]{artifact.name} was refitted on its test songs: these figures are "
            "optimistic (its held-out twin's are in its card)"
        )
    arrays = subset(arrays, np.flatnonzero(keep))
    stream_result = None
    if stream:  # before TensorFlow is imported (openSMILE runs in this process with -j 1)
        from streammood.training.streams import evaluate_streams, fourq_songs

        paths, labels = fourq_songs(Path(data_dir))
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        stream_result = evaluate_streams(
            artifact,
            sorted(arrays["song_id"].tolist()),
            paths,
            labels,
            Path(report_dir),
            xfade=xfade,
            seed=stream_seed,
            cache_dir=(Path(cache_dir).parent if cache_dir else Path(".cache")) / "streams",
            jobs=jobs,
        )
    from streammood.training.train import load_members, predict_windows

    outputs = predict_windows(load_members(artifact), arrays)
    report = _report(arrays, outputs, artifact.task, Path(report_dir), dataset)
    report["model"] = {"name": artifact.name, "version": artifact.version}
    report["labels"] = list(QUADRANTS)
    if stream_result is not None:
        report["stream"] = stream_result
    write_json(Path(report_dir) / "metrics.json", report)
    return report
