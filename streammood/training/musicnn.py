"""musicnn (Pons & Serra, 2019) in Keras 3: checkpoints read directly, exported to LiteRT.

The ``musicnn`` wheel ships TensorFlow 1 checkpoints of music auto-taggers, 50 tags each: the
musicnn architecture trained on the Million Song Dataset (``MSD_musicnn``) and on MagnaTagATune
(``MTT_musicnn``), and the authors' VGG-like baseline trained on the Million Song Dataset
(``MSD_vgg``). Its package code needs ``tf.compat.v1.layers`` (gone with Keras 3) and overflows
under NumPy 2, so this module re-defines both architectures with Keras layers and reads the
checkpoint variables with :func:`tf.train.load_checkpoint`. The outputs match the original graphs
to float tolerance (``tests/model/test_musicnn.py`` runs the original TF1 graph from each
checkpoint's ``.meta``; for ``MSD_vgg`` that graph, not ``musicnn/models.py``, is the reference:
its first two poolings are (4, 1) and (1, 4), not the source's strided (4, 1) and (2, 2)).

Input: a log-mel patch ``(batch, 187, 96)`` — 16 kHz, ``n_fft`` 512, hop 256, 96 mel bands,
``log10(10000 x + 1)`` of the power mel spectrogram, 187 frames (~3 s); see
:mod:`streammood.layout`.

This is the TensorFlow side (training, export). Serving uses :mod:`streammood.features.embedding`,
which needs only LiteRT.

Rebuild the shipped LiteRT files with ``scripts/export_musicnn.py --out models/musicnn``.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streammood.errors import StreammoodError
from streammood.features.smile import load_library
from streammood.layout import MEL_BANDS, MEL_PATCH_FRAMES

load_library()  # before TensorFlow (see its docstring)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

MODELS = ("MSD", "MTT", "MSD_vgg")
"""Pretrained taggers in the wheel: musicnn on the Million Song Dataset and on MagnaTagATune, and
the VGG-like baseline on the Million Song Dataset."""
EMBED_DIMS = {"MSD": 200, "MTT": 200, "MSD_vgg": 256}
"""Size of each model's embedding: musicnn's penultimate layer (200), the VGG's last pooled
feature map, flattened (2 x 1 x 128)."""
BN_EPSILON = 1e-3
"""``tf.compat.v1.layers.batch_normalization``'s default epsilon."""

_TIMBRAL = (("conv2d", 38), ("conv2d_1", 67))  # 7 x int(0.4 * 96), 7 x int(0.7 * 96)
_TEMPORAL = (("conv2d_2", 128), ("conv2d_3", 64), ("conv2d_4", 32))
_FRONT_FILTERS = (204, 51)  # int(1.6 * 128), int(1.6 * 32)
_MID_FILTERS = 64
_BACK_UNITS = 200
_VGG_POOLS = ((4, 1), (1, 4), (2, 2), (2, 2), (4, 4))  # max-pool sizes = strides, 'valid'
_VGG_FILTERS = 128
_SHIPPED_DIRS = {"MSD": "MSD_musicnn", "MTT": "MTT_musicnn", "MSD_vgg": "MSD_vgg"}


class MusicnnCheckpointError(StreammoodError):
    """A musicnn checkpoint folder is missing, incomplete or does not fit the architecture."""


def build_musicnn(n_outputs: int = 50, name: str = "musicnn") -> keras.Model:
    """The musicnn architecture (``7774timbraltemporal`` front end, 64-filter mid end, 200 units).

    Layer names follow the checkpoint's variable scopes (``batch_normalization``, ``conv2d_5``,
    ``dense_1``...), so :func:`load_musicnn_weights` can match them one to one.

    Parameters
    ----------
    n_outputs : int
        Number of tags (50 for both shipped models).
    name : str
        Model name (must differ between models nested in one graph).

    Returns
    -------
    keras.Model
        Input ``patch`` ``(batch, 187, 96)`` log-mel; outputs a dict: ``tags``
        ``(batch, n_outputs)`` sigmoid probabilities, ``embedding`` ``(batch, 200)`` (the
        penultimate layer: batch norm after the ReLU dense layer), ``pooled`` ``(batch, 1506)``
        (temporal max and mean, interleaved).
    """
    patch = keras.Input((MEL_PATCH_FRAMES, MEL_BANDS), name="patch")
    x = layers.Reshape((MEL_PATCH_FRAMES, MEL_BANDS, 1), name="expand")(patch)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="batch_normalization")(x)

    bn = 1
    branches = []
    # timbral: valid convolution over input padded by 3 frames in time only ('same' in time)
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)), name="pad_timbral")(x)
    for conv_name, height in _TIMBRAL:
        branches.append(
            _front_block(padded, conv_name, (7, height), "valid", _FRONT_FILTERS[0], f"_{bn}")
        )
        bn += 1
    # temporal: TF 'same' padding (for even kernels: one more frame after than before)
    for conv_name, length in _TEMPORAL:
        branches.append(
            _front_block(x, conv_name, (length, 1), "same", _FRONT_FILTERS[1], f"_{bn}")
        )
        bn += 1
    front = layers.Concatenate(axis=-1, name="frontend")(branches)  # (batch, 187, 561)

    # mid end: Conv2D(kernel 7 x channels) on a time-padded map == Conv1D(64, 7, 'same')
    mid1 = _mid_block(front, "conv2d_5", f"batch_normalization_{bn}")
    conv2 = _mid_block(mid1, "conv2d_6", f"batch_normalization_{bn + 1}")
    mid2 = layers.Add(name="res_conv2")([conv2, mid1])
    conv3 = _mid_block(mid2, "conv2d_7", f"batch_normalization_{bn + 2}")
    mid3 = layers.Add(name="res_conv3")([conv3, mid2])
    features = layers.Concatenate(axis=-1, name="midend")([front, mid1, mid2, mid3])  # 753

    # back end: [max, mean] over time, stacked on a trailing axis and flattened -> interleaved
    n_feat = features.shape[-1]
    pmax = layers.Reshape((n_feat, 1), name="max_pool")(
        layers.GlobalMaxPooling1D(name="time_max")(features)
    )
    pmean = layers.Reshape((n_feat, 1), name="mean_pool")(
        layers.GlobalAveragePooling1D(name="time_mean")(features)
    )
    pooled = layers.Flatten(name="pooled")(layers.Concatenate(axis=-1, name="pool")([pmax, pmean]))
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name="batch_normalization_9")(pooled)
    y = layers.Dropout(0.5, name="dropout")(y)
    y = layers.Dense(_BACK_UNITS, activation="relu", name="dense")(y)
    embedding = layers.BatchNormalization(epsilon=BN_EPSILON, name="batch_normalization_10")(y)
    y = layers.Dropout(0.5, name="dropout_1")(embedding)
    logits = layers.Dense(n_outputs, name="dense_1")(y)
    tags = layers.Activation("sigmoid", name="tags")(logits)
    return keras.Model(patch, {"tags": tags, "embedding": embedding, "pooled": pooled}, name=name)


def build_vgg(n_outputs: int = 50, name: str = "vgg") -> keras.Model:
    """The musicnn package's VGG-like tagger, as saved in ``MSD_vgg``.

    Input batch norm (one channel), then five blocks of Conv2D(128, 3 x 3, "same") → ReLU → batch
    norm → max-pool (sizes :data:`_VGG_POOLS`, strides equal, "valid"): ``(187, 96)`` → (46, 96)
    → (46, 24) → (23, 12) → (11, 6) → (2, 1); flattened (256), then the tag layer. Layer names
    follow the checkpoint's variable scopes (``1CNN``..., ``batch_normalization_1``...).

    Returns
    -------
    keras.Model
        Input ``patch`` ``(batch, 187, 96)`` log-mel; outputs a dict: ``tags``
        ``(batch, n_outputs)`` sigmoid probabilities, ``embedding`` ``(batch, 256)`` (the last
        pooled feature map, time-major as TF1's flatten).
    """
    patch = keras.Input((MEL_PATCH_FRAMES, MEL_BANDS), name="patch")
    x = layers.Reshape((MEL_PATCH_FRAMES, MEL_BANDS, 1), name="expand")(patch)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="batch_normalization")(x)
    for i, pool in enumerate(_VGG_POOLS, start=1):
        x = layers.Conv2D(_VGG_FILTERS, 3, padding="same", activation="relu", name=f"{i}CNN")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"batch_normalization_{i}")(x)
        x = layers.MaxPooling2D(pool, pool, name=f"pool{i}")(x)
    embedding = layers.Flatten(name="pool5_flat")(x)
    logits = layers.Dense(n_outputs, name="dense")(embedding)
    tags = layers.Activation("sigmoid", name="tags")(logits)
    return keras.Model(patch, {"tags": tags, "embedding": embedding}, name=name)


def _front_block(
    x, conv_name: str, kernel: tuple[int, int], padding: str, filters: int, bn_suffix: str
):
    """conv -> ReLU -> BN -> max over all remaining frequencies: ``(batch, 187, filters)``."""
    y = layers.Conv2D(filters, kernel, padding=padding, activation="relu", name=conv_name)(x)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"batch_normalization{bn_suffix}")(y)
    width = y.shape[2]
    y = layers.MaxPooling2D((1, width), name=f"{conv_name}_freq_max")(y)
    return layers.Reshape((y.shape[1], filters), name=f"{conv_name}_squeeze")(y)


def _mid_block(x, conv_name: str, bn_name: str):
    y = layers.Conv1D(_MID_FILTERS, 7, padding="same", activation="relu", name=conv_name)(x)
    return layers.BatchNormalization(epsilon=BN_EPSILON, name=bn_name)(y)


def shipped_checkpoint_dir(which: str) -> Path:
    """Folder of the checkpoint shipped in the ``musicnn`` wheel (found without importing it).

    Parameters
    ----------
    which : {"MSD", "MTT", "MSD_vgg"}
    """
    if which not in _SHIPPED_DIRS:
        raise MusicnnCheckpointError(f"unknown musicnn model {which!r}: expected one of {MODELS}")
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise MusicnnCheckpointError(
            "musicnn checkpoints not found: install them with "
            "'pip install --no-deps musicnn==0.1.0'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / _SHIPPED_DIRS[which]


def read_checkpoint(checkpoint_dir: str | Path) -> dict[str, np.ndarray]:
    """All model variables of a musicnn checkpoint folder (optimizer slots left out).

    The shipped folders name their files with an empty prefix (``.index``,
    ``.data-00000-of-00001``) and their ``checkpoint`` file points into the author's home; the
    files are read from a temporary copy with a real prefix.

    Parameters
    ----------
    checkpoint_dir : path
        Folder with ``.index`` and ``.data-00000-of-00001`` (or ``<prefix>.index`` etc.).

    Returns
    -------
    dict
        Variable name (``conv2d/kernel``...) to array.
    """
    folder = Path(checkpoint_dir)
    index = sorted(folder.glob("*.index")) if folder.is_dir() else []  # matches ".index" too
    if not folder.is_dir() or not index:
        raise MusicnnCheckpointError(f"{folder}: not a musicnn checkpoint folder (no .index file)")
    prefix = index[0].name[: -len(".index")]
    data = sorted(folder.glob(f"{prefix}.data-*"))
    if not data:
        raise MusicnnCheckpointError(f"{folder}: checkpoint data file missing")
    with tempfile.TemporaryDirectory(prefix="musicnn-ckpt-") as tmp:
        for src in [index[0], *data]:
            suffix = src.name[len(prefix) :]  # ".index", ".data-00000-of-00001"
            shutil.copyfile(src, Path(tmp) / f"model{suffix}")
        try:
            reader = tf.train.load_checkpoint(str(Path(tmp) / "model"))
        except (tf.errors.OpError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or ["?"])[0]
            raise MusicnnCheckpointError(f"{folder}: unreadable checkpoint ({reason})") from None
        names = [
            n
            for n in reader.get_variable_to_shape_map()
            if "Adam" not in n and not n.endswith("_power")
        ]
        return {n: reader.get_tensor(n) for n in names}


def load_musicnn_weights(model: keras.Model, checkpoint_dir: str | Path) -> keras.Model:
    """Set a :func:`build_musicnn` or :func:`build_vgg` model's weights from a TF1 checkpoint
    folder of the musicnn wheel.

    Every checkpoint variable is used exactly once and every model weight is set; anything else
    raises :class:`MusicnnCheckpointError`.

    Returns
    -------
    keras.Model
        ``model``, for chaining.
    """
    variables = read_checkpoint(checkpoint_dir)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, layers.BatchNormalization):
            keys = ["gamma", "beta", "moving_mean", "moving_variance"]
        elif isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Dense)):
            keys = ["kernel", "bias"]
        else:  # pragma: no cover - the architectures have no other weighted layers
            raise MusicnnCheckpointError(f"layer {layer.name} has weights of unknown kind")
        values = []
        for key, weight in zip(keys, layer.weights, strict=True):
            name = f"{layer.name}/{key}"
            if name not in variables:
                raise MusicnnCheckpointError(f"{checkpoint_dir}: variable {name} missing")
            value = variables[name]
            if isinstance(layer, layers.Conv1D) and key == "kernel":
                value = value.reshape(value.shape[0], value.shape[1], value.shape[3])
            if tuple(value.shape) != tuple(weight.shape):
                raise MusicnnCheckpointError(
                    f"{checkpoint_dir}: {name} has shape {value.shape}, the model expects "
                    f"{tuple(weight.shape)}"
                )
            values.append(value)
            used.add(name)
        layer.set_weights(values)
    unused = sorted(set(variables) - used)
    if unused:
        raise MusicnnCheckpointError(f"{checkpoint_dir}: variables not in the model: {unused[:5]}")
    return model


def load_musicnn(which: str = "MSD", checkpoint_dir: str | Path | None = None) -> keras.Model:
    """:func:`build_musicnn` (or, for ``MSD_vgg``, :func:`build_vgg`) with a pretrained checkpoint
    loaded (default: the one in the wheel).

    Parameters
    ----------
    which : {"MSD", "MTT", "MSD_vgg"}
    checkpoint_dir : path, optional
    """
    folder = shipped_checkpoint_dir(which) if checkpoint_dir is None else Path(checkpoint_dir)
    if which.endswith("_vgg"):
        model = build_vgg(50, name=which.lower())
    else:
        model = build_musicnn(50, name=f"{which.lower()}_musicnn")
    return load_musicnn_weights(model, folder)


def build_embedder(which: Sequence[str] = ("MSD", "MTT")) -> keras.Model:
    """A model mapping a log-mel patch to the concatenated embeddings.

    Parameters
    ----------
    which : sequence of {"MSD", "MTT", "MSD_vgg"}
        Models to use, in output order.

    Returns
    -------
    keras.Model
        ``(batch, 187, 96)`` -> ``(batch, sum(EMBED_DIMS[w] for w in which))`` float32.
    """
    which = tuple(which)
    if not which or any(w not in MODELS for w in which) or len(set(which)) != len(which):
        raise MusicnnCheckpointError(f"bad musicnn model choice {which}: use a subset of {MODELS}")
    patch = keras.Input((MEL_PATCH_FRAMES, MEL_BANDS), name="patch")
    embeddings = [load_musicnn(w)(patch)["embedding"] for w in which]
    if len(embeddings) == 1:
        out = embeddings[0]
    else:
        out = layers.Concatenate(name="embedding")(embeddings)
    return keras.Model(patch, out, name="musicnn_" + "_".join(w.lower() for w in which))


def export_tflite(model: keras.Model, path: str | Path) -> Path:
    """Convert a Keras model to a float32 LiteRT flatbuffer (``TFLiteConverter.from_keras_model``).

    The batch dimension stays dynamic: resize the input tensor for batched calls.

    Returns
    -------
    Path
        The written file.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    flatbuffer = converter.convert()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path


SHIPPED_FILES = {
    "msd_mtt_vgg.tflite": ("MSD", "MTT", "MSD_vgg"),
    "msd_mtt.tflite": ("MSD", "MTT"),
    "msd.tflite": ("MSD",),
}
"""The LiteRT files shipped in ``models/musicnn`` and the models each concatenates."""
