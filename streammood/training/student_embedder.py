"""A small CNN distilled from the pretrained embedder: the same log-mel patches in, the same 656
values out, at a fraction of the cost.

The musicnn MSD + MTT + MSD-VGG embedder (:mod:`streammood.training.musicnn`) costs ~3.2 G
multiply-adds per 3 s patch (~100 ms on one core of this machine), two thirds of a live step's CPU.
The student here (~0.07 G) is trained to regress the teacher's outputs, standardised per column, on
dense patches of training songs (every other step, and the first six, whose patches start with
zeros), so it can be dropped into the artifact's ``embedder.tflite`` and served by the same
:class:`~streammood.features.embedding.MusicnnEmbedder`.

This is the TensorFlow side (training, export); ``scripts/distill_embedder.py`` runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streammood.features.embedding import MusicnnEmbedder
from streammood.features.mel import patches_at
from streammood.layout import MEL_BANDS, MEL_PATCH_FRAMES, SMILE_STEP_SAMPLES
from streammood.training.quiet import import_tensorflow

import_tensorflow()

import keras  # noqa: E402
from keras import layers  # noqa: E402

DENSE_EVERY = 2
"""Distillation patches end every ``DENSE_EVERY`` steps (1 s), after the first six steps (every
step there: the patches a stream's first opinion and the early patch use)."""
STUDENT_WIDTHS = (32, 64, 128, 192, 256)
"""Channels of the student's five convolution blocks."""


def distillation_steps(n_steps: int) -> np.ndarray:
    """Steps whose patch is distilled: ``0..5`` and every :data:`DENSE_EVERY`-th after, ``(k,)``."""
    head = np.arange(min(6, n_steps))
    return np.concatenate([head, np.arange(6, n_steps, DENSE_EVERY)]).astype(np.int64)


def distillation_patches(y16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The log-mel patches ending at the :func:`distillation_steps` of a 16 kHz signal.

    Returns
    -------
    steps : np.ndarray
        ``(k,)`` int64 step numbers.
    patches : np.ndarray
        ``(k, 187, 96)`` float32, as :class:`~streammood.features.mel.MelPatcher` gives them.
    """
    steps = distillation_steps(len(y16) // SMILE_STEP_SAMPLES)
    patches = patches_at(y16, steps)
    return steps, patches


def teacher_targets(teacher: MusicnnEmbedder, patches: np.ndarray, batch: int = 16) -> np.ndarray:
    """The teacher's ``(k, D)`` outputs for ``(k, 187, 96)`` patches, ``batch`` at a time."""
    parts = [teacher.embed(patches[i : i + batch]) for i in range(0, len(patches), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, teacher.dim), np.float32)


def build_student(
    mean: np.ndarray, std: np.ndarray, widths: Sequence[int] = STUDENT_WIDTHS
) -> keras.Model:
    """The student CNN: ``(batch, 187, 96)`` log-mel patches → ``(batch, D)`` teacher-scale values.

    A strided 5 x 5 convolution and four 3 x 3 ones (each with batch norm and ReLU, 2 x 2
    max-pooling after all but the last; ~70 M multiply-adds), global mean and max pooling, one
    hidden dense layer, and a linear read-out of standardised columns, mapped back with the
    teacher's column ``mean`` and ``std`` (``(D,)`` each).
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    inp = keras.Input((MEL_PATCH_FRAMES, MEL_BANDS), name="patches")
    x = layers.Reshape((MEL_PATCH_FRAMES, MEL_BANDS, 1))(inp)
    x = layers.BatchNormalization(name="input_norm")(x)
    for i, width in enumerate(widths):
        kernel, strides = ((5, 5), (2, 2)) if i == 0 else ((3, 3), (1, 1))
        x = layers.Conv2D(width, kernel, strides=strides, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if i < len(widths) - 1:
            x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)])
    x = layers.Dense(512, activation="relu")(x)
    z = layers.Dense(len(mean), name="standardised")(x)
    out = layers.Rescaling(std, offset=mean, name="teacher_scale")(z)
    return keras.Model(inp, out, name="student_embedder")


def train_student(
    patches: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray,
    *,
    epochs: int = 12,
    batch: int = 64,
    val_fraction: float = 0.1,
    seed: int = 0,
    hook: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Fit a :func:`build_student` to the teacher's outputs.

    Parameters
    ----------
    patches : np.ndarray
        ``(n, 187, 96)`` log-mel patches (float16 or float32).
    targets : np.ndarray
        ``(n, D)`` teacher outputs for them.
    groups : np.ndarray
        ``(n,)`` song of each patch: the validation songs (``val_fraction`` of them) are
        held out whole.
    epochs, batch, seed : int
        Training length (cosine-decayed Adam), batch size and seed.
    hook : callable, optional
        ``hook(epoch, epochs, logs)`` after each epoch (progress display).

    Returns
    -------
    model : keras.Model
        The student, weights of its best validation epoch.
    summary : dict
        ``train_patches``, ``val_patches``, ``val_songs``, ``epochs``, per-epoch ``loss`` and
        ``val_loss`` (mean squared error on standardised columns), ``val_r2`` (mean over columns
        of the best epoch's explained variance) and ``best_epoch``.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    songs = np.unique(groups)
    val_songs = rng.choice(songs, max(1, int(round(val_fraction * len(songs)))), replace=False)
    is_val = np.isin(groups, val_songs)
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    mean = targets[tr].mean(0)
    std = targets[tr].std(0) + 1e-3
    model = build_student(mean, std)
    z = ((targets - mean) / std).astype(np.float32)
    steps = epochs * int(np.ceil(len(tr) / batch))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.02)
    standardised = keras.Model(model.input, model.get_layer("standardised").output)
    standardised.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    best, best_weights, history = np.inf, None, {"loss": [], "val_loss": []}
    x_val, z_val = patches[va].astype(np.float32), z[va]
    for epoch in range(epochs):
        order = rng.permutation(tr)
        losses = []
        for i in range(0, len(order), batch):
            idx = np.sort(order[i : i + batch])
            losses.append(
                float(standardised.train_on_batch(patches[idx].astype(np.float32), z[idx]))
            )
        val_loss = float(standardised.evaluate(x_val, z_val, batch_size=256, verbose=0))
        history["loss"].append(float(np.mean(losses)))
        history["val_loss"].append(val_loss)
        if val_loss < best:
            best, best_weights = val_loss, model.get_weights()
        if hook is not None:
            hook(epoch + 1, epochs, {"loss": history["loss"][-1], "val_loss": val_loss})
    model.set_weights(best_weights)
    pred = standardised.predict(x_val, batch_size=256, verbose=0)
    r2 = 1.0 - ((pred - z_val) ** 2).mean(0) / np.maximum(z_val.var(0), 1e-6)
    summary = {
        "train_patches": len(tr),
        "val_patches": len(va),
        "val_songs": len(val_songs),
        "epochs": epochs,
        "loss": history["loss"],
        "val_loss": history["val_loss"],
        "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        "val_r2": float(np.mean(r2)),
    }
    return model, summary


def save_student(model: keras.Model, path: str | Path) -> Path:
    """Write the student as a LiteRT file :class:`MusicnnEmbedder` serves (dynamic batch)."""
    from streammood.training.musicnn import export_tflite

    return export_tflite(model, path)
