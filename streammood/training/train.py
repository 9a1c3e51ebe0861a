"""Train mood models and write the artifact (TensorFlow side).

The recipe follows the seed: split by artist (by song where a data set knows no artists), stratified
and seeded, 80/20 train+validation / test, then 80/20 train / validation; early stopping on the
validation loss. Improvements over the seed: the pretrained-embedding branch, per-step loss over
every prefix of the window (so the live prefix predictions before 60 steps are trained too), an
ensemble of seeds (each validating on its own fold), and a student distilled from that ensemble, so
the exported step model runs one sequence core (or, without distillation, the ensemble averaged
inside the step model). Test figures always come from models that never saw the test songs; with
``refit`` the shipped model is then trained once more the same way on every song.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from streammood.features.smile import load_library
from streammood.layout import WINDOW_STEPS
from streammood.runtime.artifact import sha256_of, write_manifest
from streammood.runtime.labels import QUADRANTS
from streammood.training.config import TrainConfig
from streammood.training.quiet import import_tensorflow

load_library()  # before TensorFlow (see its docstring)
import_tensorflow()  # log levels lowered, start-up chatter dropped (see streammood.training.quiet)

import keras  # noqa: E402  (after TensorFlow's quiet import)

from streammood.training.architecture import (  # noqa: E402
    ModelConfig,
    MoodLayers,
    NormStats,
    build_pooled_model,
    build_step_model,
    build_window_model,
)

ProgressHook = Callable[[str, int, int, dict[str, float]], None]
"""``hook(member_name, epoch, max_epochs, logs)`` after every epoch."""


class _EpochHook(keras.callbacks.Callback):
    def __init__(self, name: str, epochs: int, hook: ProgressHook | None) -> None:
        super().__init__()
        self.name, self.epochs, self.hook = name, epochs, hook

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.hook is not None:
            self.hook(
                self.name, epoch + 1, self.epochs, {k: float(v) for k, v in (logs or {}).items()}
            )


def _inputs(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [arrays["mfcc"], arrays["lld"], arrays["emb"]]


def _targets(
    arrays: dict[str, np.ndarray], task: str, power: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step targets — one-hot ``(N, T, 4)`` or valence/arousal ``(N, T, 2)`` — and per-step
    weights ``(N, T)``: real steps only, weighted ``((t + 1) / T) ** power``."""
    mask = arrays["mask"].astype(np.float32)
    steps = mask.shape[1]
    weights = mask * (np.arange(1, steps + 1, dtype=np.float32) / steps) ** power
    if task == "classification":
        if "label_steps" in arrays:  # per-step labels (spliced windows: the song playing)
            return np.eye(len(QUADRANTS), dtype=np.float32)[arrays["label_steps"]], weights
        onehot = np.eye(len(QUADRANTS), dtype=np.float32)[arrays["label"]]
        return np.repeat(onehot[:, None, :], steps, axis=1), weights
    va = arrays["va"]
    if va.ndim == 2:  # static label for every step
        va = np.repeat(va[:, None, :], steps, axis=1)
    return va.astype(np.float32), weights


def fit_member(
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray] | None,
    norm: NormStats,
    config: TrainConfig,
    seed: int,
    hook: ProgressHook | None = None,
    name: str = "m0",
    *,
    soft_targets: np.ndarray | None = None,
    stage_epochs: tuple[int, int] | None = None,
    label: str | None = None,
    pooled_init: list[np.ndarray] | None = None,
) -> tuple[MoodLayers, dict[str, Any]]:
    """Train one model (layer names prefixed ``name``; ``label`` names it in the progress
    display); returns its layers (best validation weights) and a summary.

    With ``config.pooled_first`` (and both branches on), training has two stages: the linear
    read-out of the window's embedding statistics alone first (the LSTM branch's output layer at
    zero), then everything at a lower learning rate starting from that solution — the LSTM branch
    learns a correction, and early stopping can only keep what helps on validation.

    Without ``val`` the stages run for ``stage_epochs`` = (stage 1, stage 2) epochs (stage 2
    skipped at 0), with no early stopping. ``soft_targets`` ``(N, T, 4|2)`` blend into the
    training targets by ``config.distill_alpha`` (knowledge distillation); validation always
    scores against the true labels. ``pooled_init`` (kernel, bias), when training is staged,
    replaces stage 1: the read-out starts from (and stage 2 fine-tunes) these weights; stage 1
    is then recorded as 0 epochs.
    """
    if val is None and stage_epochs is None:
        raise ValueError("without validation data, stage_epochs must be given")
    if config.stream_augment and soft_targets is None and "label_steps" not in train:
        train = _for_streams(train, config, seed)
    keras.utils.set_random_seed(seed)
    parts = MoodLayers(config.model, norm, name=name)
    model = build_window_model(parts)
    y_train, w_train = _targets(train, config.task, config.step_weight_power)
    if soft_targets is not None:
        a = config.distill_alpha
        y_train = ((1 - a) * y_train + a * soft_targets).astype(np.float32)
    y_val, w_val = (
        _targets(val, config.task, config.step_weight_power) if val is not None else (None, None)
    )
    started = time.perf_counter()
    staged = _staged(config)
    loss = "categorical_crossentropy" if config.task == "classification" else "mae"
    losses: list[float] = []
    best: list[int] = []  # best (or run) epoch of each stage

    def fit(
        net: keras.Model,
        inputs: np.ndarray | list[np.ndarray],
        val_inputs: np.ndarray | list[np.ndarray] | None,
        lr: float,
        stage: str,
        epochs: int,
    ) -> None:
        net.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
        callbacks: list[keras.callbacks.Callback] = [
            _EpochHook(f"{label or f'seed {seed}'}{stage}", epochs, hook)
        ]
        validation = None
        if val_inputs is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=config.patience, restore_best_weights=True
                )
            )
            validation = (val_inputs, y_val, w_val)
        history = net.fit(
            inputs,
            y_train,
            sample_weight=w_train,
            validation_data=validation,
            epochs=epochs,
            batch_size=config.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
        run = history.history.get("val_loss", history.history["loss"])
        losses.extend(run)
        best.append(int(np.argmin(run)) + 1 if val_inputs is not None else len(run))

    def inputs_of(arrays: dict[str, np.ndarray] | None, pooled: bool = False):
        if arrays is None:
            return None
        return arrays["emb"] if pooled else _inputs(arrays)

    epochs1, epochs2 = stage_epochs or (config.epochs, config.epochs)
    lstm_kept = True
    if staged:  # 1: the linear read-out alone; 2: everything, the LSTM branch from zero logits
        if pooled_init is not None:  # stage 1 given
            parts.pooled_out.set_weights(pooled_init)
            best.append(0)
        else:
            fit(
                build_pooled_model(parts),
                train["emb"],
                inputs_of(val, True),
                config.learning_rate,
                " (1/2)",
                epochs1,
            )
        stage1_epochs = len(losses)
        for w in parts.lstm_out.weights:
            w.assign(np.zeros(w.shape, np.float32))
        lr2 = config.learning_rate * config.stage2_lr_scale
        if val is not None:
            model.compile(loss=loss)
            start = model.get_weights()
            start_loss = float(
                model.evaluate(_inputs(val), y_val, sample_weight=w_val, verbose=0, batch_size=64)
            )
            fit(model, _inputs(train), _inputs(val), lr2, " (2/2)", epochs2)
            lstm_kept = min(losses[stage1_epochs:]) < start_loss
            if not lstm_kept:  # the LSTM branch did not help on validation: keep stage 1
                model.set_weights(start)
        elif epochs2 > 0:
            fit(model, _inputs(train), None, lr2, " (2/2)", epochs2)
        else:
            lstm_kept = False
    else:
        fit(model, _inputs(train), inputs_of(val), config.learning_rate, "", epochs1)
    summary = {
        "seed": seed,
        "lstm_branch": "trained" if not staged else ("kept" if lstm_kept else "zero (no gain)"),
        "epochs_run": len(losses),
        "stage_best_epochs": best,
        "best_epoch": int(np.argmin(losses)) + 1 if val is not None else len(losses),
        "best_val_loss": float(np.min(losses)) if val is not None else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return parts, summary


def _for_streams(arrays: dict[str, np.ndarray], config: TrainConfig, seed: int):
    """Training windows plus their restarts and splices (:mod:`streammood.training.augment`)."""
    from streammood.training.augment import stream_training_windows

    return stream_training_windows(arrays, seed=seed, splice_share=config.splice_share)


def predict_windows(members: list[MoodLayers], arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Ensemble-mean per-step outputs ``(N, T, 4|2)`` of whole windows."""
    outs = [
        build_window_model(p).predict(_inputs(arrays), batch_size=64, verbose=0) for p in members
    ]
    return np.mean(outs, axis=0).astype(np.float32)


def export_artifact(
    members: list[MoodLayers],
    out_dir: Path,
    embedder_tflite: Path,
    *,
    name: str,
    version: str,
    extra: dict[str, Any],
) -> Path:
    """Write a model artifact folder (see :mod:`streammood.runtime.artifact`)."""
    import tensorflow as tf

    out_dir = Path(out_dir)
    (out_dir / "keras").mkdir(parents=True, exist_ok=True)
    step = build_step_model(members, rows=WINDOW_STEPS)
    converter = tf.lite.TFLiteConverter.from_keras_model(step)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every tensor spec
        (out_dir / "step.tflite").write_bytes(converter.convert())
    shutil.copyfile(embedder_tflite, out_dir / "embedder.tflite")
    np.savez(out_dir / "norm.npz", **members[0].norm.to_arrays())
    keras_files = []
    for k, parts in enumerate(members):
        rel = f"keras/member{k}.weights.h5"
        build_window_model(parts).save_weights(out_dir / rel)
        keras_files.append(rel)
    config = members[0].config
    manifest = {
        "name": name,
        "version": version,
        "task": config.task,
        "labels": list(QUADRANTS),
        "emb_dim": members[0].norm.emb_dim,
        "window_steps": WINDOW_STEPS,
        "members": len(members),
        "model_config": {k: v for k, v in asdict(config).items() if k != "extra"},
        "keras_members": keras_files,
        "embedder_source_sha256": sha256_of(embedder_tflite),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    files = {"step": "step.tflite", "embedder": "embedder.tflite", "norm": "norm.npz"}
    files.update({f"keras_member{k}": p for k, p in enumerate(keras_files)})
    write_manifest(out_dir, manifest, files)
    return out_dir


def load_members(artifact) -> list[MoodLayers]:
    """Rebuild an artifact's Keras members (for evaluation or further training)."""
    norm_arrays = np.load(artifact.file("norm"))
    norm = NormStats(**{k: norm_arrays[k] for k in norm_arrays.files})
    config = ModelConfig(**artifact.manifest["model_config"])
    members = []
    for k, path in enumerate(artifact.keras_members()):
        parts = MoodLayers(config, norm, name=f"m{k}")
        build_window_model(parts).load_weights(path)
        members.append(parts)
    return members


def train_ensemble(
    arrays: dict[str, np.ndarray],
    folds: list[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    hook: ProgressHook | None = None,
) -> tuple[list[MoodLayers], list[dict[str, Any]]]:
    """Train one member per seed, member ``k`` on ``folds[k]`` = (train, validation) indices
    into ``arrays``; normalisation statistics from every song in ``arrays`` (no labels used)."""
    mask = arrays["mask"]
    norm = NormStats.fit(arrays["mfcc"][mask], arrays["lld"][mask], arrays["emb"][mask])
    members, summaries = [], []
    for k, seed in enumerate(config.seeds):
        tr, va = folds[k % len(folds)]
        train = {n: v[tr] for n, v in arrays.items()}
        val = {n: v[va] for n, v in arrays.items()}
        parts, summary = fit_member(train, val, norm, config, seed, hook, name=f"m{k}")
        members.append(parts)
        summaries.append({**summary, "train_songs": int(len(tr)), "val_songs": int(len(va))})
    return members, summaries


def mean_readout(members: list[MoodLayers]) -> list[np.ndarray]:
    """The members' pooled read-outs averaged: kernel ``(2D, outputs)`` and bias ``(outputs,)``.

    Every member reads the same standardised window statistics (one :class:`NormStats`), so the
    mean of their weights is itself a read-out: a bagged logistic regression over the members'
    training folds.
    """
    weights = [m.pooled_out.get_weights() for m in members]
    return [np.mean(w, axis=0) for w in zip(*weights, strict=True)]


def _staged(config: TrainConfig) -> bool:
    """Whether training runs in two stages (read-out first; see :func:`fit_member`)."""
    return config.pooled_first and config.model.use_lstm and config.model.use_pooled


def distill_student(
    teachers: list[MoodLayers],
    summaries: list[dict[str, Any]],
    arrays: dict[str, np.ndarray],
    config: TrainConfig,
    hook: ProgressHook | None = None,
    *,
    readouts: list[MoodLayers] | None = None,
) -> tuple[MoodLayers, dict[str, Any]]:
    """Distil an ensemble into one model of the same architecture, trained on every song in
    ``arrays`` (all the ensemble's training and validation songs).

    With staged training the student's linear read-out is the mean of the members' read-outs
    (:func:`mean_readout` of ``readouts``, default the teachers), not a fit of its own: one fit
    on all songs is no better than a single member, while the average keeps most of what the
    ensemble gains by averaging (4 splits: see docs/benchmarks.md). Its LSTM branch is then
    distilled: targets per step blend the true label with the ensemble's output
    (``config.distill_alpha``). There is no held-out song left for early stopping, so each
    stage runs for the median of the members' best epochs, and the LSTM stage only runs when
    most members kept their LSTM branch.
    """
    songs = int(len(arrays["label"]))
    if config.stream_augment:  # the teachers' outputs on the student's stream windows
        arrays = _for_streams(arrays, config, max(config.seeds) + 1)
    soft = predict_windows(teachers, arrays)
    staged = _staged(config)
    stage1 = 0 if staged else int(np.median([s["stage_best_epochs"][0] for s in summaries]))
    kept = [s for s in summaries if s["lstm_branch"] in ("kept", "trained")]
    stage2 = 0
    if 2 * len(kept) > len(summaries):
        stage2 = int(np.median([s["stage_best_epochs"][-1] for s in kept]))
    seed = max(config.seeds) + 1
    student, summary = fit_member(
        arrays,
        None,
        teachers[0].norm,
        config,
        seed,
        hook,
        name="m0",
        soft_targets=soft,
        label="student",
        stage_epochs=(stage1, stage2),
        pooled_init=mean_readout(readouts or teachers) if staged else None,
    )
    if staged:
        summary["readout"] = f"mean of {len(readouts or teachers)} members' read-outs"
    return student, {**summary, "train_songs": songs, "val_songs": 0}


def refit_all(
    teachers: list[MoodLayers],
    summaries: list[dict[str, Any]],
    arrays: dict[str, np.ndarray],
    config: TrainConfig,
    hook: ProgressHook | None = None,
    *,
    distilled: bool,
    holdout: list[np.ndarray] | None = None,
) -> tuple[list[MoodLayers], list[dict[str, Any]]]:
    """The shipped model(s) once more, on every song in ``arrays`` (test songs included).

    Called after the held-out evaluation, so the shipped model learns from every artist while
    the reported figures stay those of its held-out twin. Where a ``distilled`` student ships,
    this is :func:`distill_student` over all songs (the teachers never saw the test songs, so
    their outputs there are genuine predictions), its read-out the mean of the members'
    read-outs refitted for their own stage-1 epochs on every song but ``holdout[k]`` (member
    ``k``'s validation fold, indices into ``arrays``: the bagging stays); otherwise each member
    is fitted again for its own best epochs per stage. Normalisation statistics stay the
    teachers'.
    """
    if distilled:
        readouts, sizes, seconds = None, [], 0.0
        if _staged(config):
            readouts = []
            for k, (seed, s) in enumerate(zip(config.seeds, summaries, strict=True)):
                keep = np.ones(len(arrays["label"]), bool)
                if holdout is not None:
                    keep[holdout[k]] = False
                parts, fitted = fit_member(
                    {n: v[keep] for n, v in arrays.items()},
                    None,
                    teachers[0].norm,
                    config,
                    seed,
                    hook,
                    name=f"r{k}",
                    label=f"refit read-out {seed}",
                    stage_epochs=(s["stage_best_epochs"][0], 0),
                )
                readouts.append(parts)
                sizes.append(int(keep.sum()))
                seconds += fitted["seconds"]
        student, summary = distill_student(
            teachers, summaries, arrays, config, hook, readouts=readouts
        )
        if sizes:
            summary["readout_train_songs"] = sizes
            summary["readout_seconds"] = round(seconds, 1)
        return [student], [summary]
    refitted, out = [], []
    for k, (seed, s) in enumerate(zip(config.seeds, summaries, strict=True)):
        best = s["stage_best_epochs"]
        stage2 = best[-1] if len(best) > 1 and s["lstm_branch"] == "kept" else 0
        parts, summary = fit_member(
            arrays,
            None,
            teachers[0].norm,
            config,
            seed,
            hook,
            name=f"m{k}",
            label=f"refit {seed}",
            stage_epochs=(best[0], stage2),
        )
        refitted.append(parts)
        out.append({**summary, "train_songs": int(len(arrays["label"])), "val_songs": 0})
    return refitted, out
