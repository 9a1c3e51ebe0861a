"""The mood model in Keras (training side; the only place besides ``musicnn.py`` that imports
TensorFlow).

The seed's CNN-LSTM, strengthened with a pretrained embedding branch:

* **frame encoder**, once per 500 ms step: MFCC block ``(21, 20)`` → standardise → LayerNorm →
  Conv1D(32, 8) → MaxPool(2) → Conv1D(64, 4) → MaxPool(2) → Conv1D(64, 4) → MaxPool(2) → Flatten →
  Dense(256), LeakyReLU(0.05), "same" padding (the seed's layers); concatenated with the
  standardised 260 LLD statistics and the standardised pretrained (musicnn) embedding ``(D,)``;
* **sequence core**: two stacked LSTM(128) over the steps of the window;
* **LSTM head**, per step: ``h2`` → Dropout → Dense(256) → LeakyReLU → Dropout → Dense → logits;
* **pooled branch**: the running mean and standard deviation of the standardised embedding over
  the window, read out linearly (L2-regularised) into the same logits — a logistic regression on
  the window's embedding statistics, the linear-probe signal that makes transfer learning work
  on 720 clips;
* **output**: softmax over the summed logits (4 quadrants, class order
  :data:`~streammood.runtime.labels.QUADRANTS`) or 2 linear outputs (valence, arousal regression).

The same layers are assembled twice: :func:`build_window_model` runs a whole window ``(B, T, ...)``
(training, evaluation), :func:`build_step_model` advances N explicit states by one step (the
streaming runtime, exported to LiteRT). Both compute the same function, which the runtime tests
check numerically.
"""

from __future__ import annotations

import numpy as np

from streammood.features.smile import load_library
from streammood.layout import MFCC_FRAMES, N_LLD_STATS, N_MFCC
from streammood.training.modelconfig import ModelConfig, NormStats

load_library()  # before TensorFlow (see its docstring)

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

__all__ = ["ModelConfig", "MoodLayers", "NormStats", "build_step_model", "build_window_model"]

LSTM_UNITS = 128
HEAD_UNITS = 256
POOL_EPS = 1e-2
LEAK = 0.05


def _normalizer(mean: np.ndarray, std: np.ndarray, name: str) -> layers.Normalization:
    return layers.Normalization(axis=-1, mean=mean, variance=np.square(std), name=name)


class MoodLayers:
    """Every weight-carrying layer of one model, shared by its window and step assemblies."""

    def __init__(self, config: ModelConfig, norm: NormStats, name: str = "m0") -> None:
        self.config = config
        self.name = name
        self.norm = norm
        self.mfcc_norm = _normalizer(norm.mfcc_mean, norm.mfcc_std, f"{name}_mfcc_norm")
        self.lld_norm = _normalizer(norm.lld_mean, norm.lld_std, f"{name}_lld_norm")
        self.emb_norm = _normalizer(norm.emb_mean, norm.emb_std, f"{name}_emb_norm")
        self.cnn = keras.Sequential(
            [
                keras.Input((MFCC_FRAMES, N_MFCC)),
                layers.LayerNormalization(),
                layers.Conv1D(32, 8, padding="same"),
                layers.LeakyReLU(LEAK),
                layers.MaxPooling1D(2),
                layers.Conv1D(64, 4, padding="same"),
                layers.LeakyReLU(LEAK),
                layers.MaxPooling1D(2),
                layers.Conv1D(64, 4, padding="same"),
                layers.LeakyReLU(LEAK),
                layers.MaxPooling1D(2),
                layers.Flatten(),
                layers.Dense(256),
                layers.LeakyReLU(LEAK),
            ],
            name=f"{name}_mfcc_cnn",
        )
        self.input_dropout = layers.Dropout(config.input_dropout, name=f"{name}_input_dropout")
        self.cell1 = layers.LSTMCell(LSTM_UNITS, name=f"{name}_lstm1")
        self.cell2 = layers.LSTMCell(LSTM_UNITS, name=f"{name}_lstm2")
        self.head_dropout1 = layers.Dropout(config.head_dropout, name=f"{name}_head_dropout1")
        self.head_dense = layers.Dense(HEAD_UNITS, name=f"{name}_head_dense")
        self.head_act = layers.LeakyReLU(LEAK, name=f"{name}_head_act")
        self.head_dropout2 = layers.Dropout(config.head_dropout, name=f"{name}_head_dropout2")
        self.lstm_out = layers.Dense(config.n_outputs, name=f"{name}_lstm_out")
        self.pooled_dropout = layers.Dropout(config.pooled_dropout, name=f"{name}_pooled_dropout")
        self.pooled_out = layers.Dense(
            config.n_outputs,
            kernel_regularizer=keras.regularizers.L2(config.pooled_l2),
            name=f"{name}_pooled_out",
        )
        activation = "softmax" if config.task == "classification" else "linear"
        self.activation = layers.Activation(activation, name=f"{name}_activation")

    def encode(self, mfcc, lld, emb):
        """Frame encoder on ``(N, 21, 20)``, ``(N, 260)``, ``(N, D)`` → ``(z (N, F), e (N, D))``."""
        e = self.emb_norm(emb)
        z = layers.Concatenate()([self.cnn(self.mfcc_norm(mfcc)), self.lld_norm(lld), e])
        return z, e

    def head(self, h, pooled):
        """Per-step output from the LSTM state ``h`` and the running-mean embedding ``pooled``:
        the two branches' logits are summed (the pooled branch is a linear read-out, a logistic
        regression on the window's mean embedding)."""
        logits = []
        if self.config.use_lstm:
            x = self.head_act(self.head_dense(self.head_dropout1(h)))
            logits.append(self.lstm_out(self.head_dropout2(x)))
        if self.config.use_pooled:
            logits.append(self.pooled_out(self.pooled_dropout(pooled)))
        return self.activation(logits[0] if len(logits) == 1 else layers.Add()(logits))


class _MergeSteps(layers.Layer):
    """``(B, T, *shape)`` → ``(B * T, *shape)``."""

    def call(self, x):
        return ops.reshape(x, (-1, *x.shape[2:]))


class _SplitSteps(layers.Layer):
    """``(B * T, F)`` → ``(B, T, F)``, with ``T`` read from a reference ``(B, T, ...)`` tensor."""

    def call(self, x, reference):
        return ops.reshape(x, (-1, ops.shape(reference)[1], x.shape[-1]))


def mean_std(total, total_sq, count):
    """Mean and standard deviation from running sums: ``[mean, std]`` on the last axis. The
    same arithmetic in the window and the step models (``std = sqrt(max(E[x²] - mean², 0) +
    1e-2)``: the floor keeps float rounding of a near-zero variance from mattering), so both
    give the same numbers."""
    mean = total / count
    var = ops.maximum(total_sq / count - mean * mean, 0.0)
    return ops.concatenate([mean, ops.sqrt(var + POOL_EPS)], axis=-1)


class _CumulativeMeanStd(layers.Layer):
    """Running mean and standard deviation over the time axis: ``(B, T, D)`` → ``(B, T, 2D)``."""

    def call(self, x):
        steps = ops.cast(ops.arange(1, ops.shape(x)[1] + 1), x.dtype)[None, :, None]
        return mean_std(ops.cumsum(x, axis=1), ops.cumsum(x * x, axis=1), steps)


def build_window_model(parts: MoodLayers) -> keras.Model:
    """Window model: ``mfcc (B, T, 21, 20)``, ``lld (B, T, 260)``, ``emb (B, T, D)`` → per-step
    output ``(B, T, 4)`` probabilities or ``(B, T, 2)`` valence/arousal. ``T`` may vary."""
    d = parts.norm.emb_dim
    mfcc = keras.Input((None, MFCC_FRAMES, N_MFCC), name="mfcc")
    lld = keras.Input((None, N_LLD_STATS), name="lld")
    emb = keras.Input((None, d), name="emb")
    # Keras 3's TimeDistributed over a sub-model fails on a variable step count: reshape instead.
    merge = _MergeSteps(name=f"{parts.name}_merge_steps")
    split = _SplitSteps(name=f"{parts.name}_split_steps")
    z, e = parts.encode(merge(mfcc), merge(lld), merge(emb))
    z, e = split(z, lld), split(e, lld)
    x = parts.input_dropout(z)
    h = layers.RNN(parts.cell1, return_sequences=True, name=f"{parts.name}_rnn1")(x)
    h = layers.RNN(parts.cell2, return_sequences=True, name=f"{parts.name}_rnn2")(h)
    y = parts.head(h, _CumulativeMeanStd(name=f"{parts.name}_emb_running_stats")(e))
    return keras.Model([mfcc, lld, emb], y, name="mood_window")


def build_pooled_model(parts: MoodLayers) -> keras.Model:
    """The pooled branch alone (the window model with the LSTM branch's logits at zero):
    ``emb (B, T, D)`` → per-step output. Shares its layers with :func:`build_window_model`;
    used to train the read-out first, quickly."""
    emb = keras.Input((None, parts.norm.emb_dim), name="emb")
    pooled = _CumulativeMeanStd(name=f"{parts.name}_pooled_running_stats")(parts.emb_norm(emb))
    y = parts.activation(parts.pooled_out(parts.pooled_dropout(pooled)))
    return keras.Model(emb, y, name="mood_pooled")


STATE_NAMES = ("h1", "c1", "h2", "c2", "emb_sum", "emb_sq_sum", "count")


def state_shapes(emb_dim: int) -> dict[str, int]:
    """Width of each explicit state of one member (rows = live windows)."""
    u = LSTM_UNITS
    d = emb_dim
    return {"h1": u, "c1": u, "h2": u, "c2": u, "emb_sum": d, "emb_sq_sum": d, "count": 1}


def _lstm_gates(z, c_prev):
    """Keras LSTMCell's gate arithmetic (order i, f, c, o; sigmoid / tanh)."""
    zi, zf, zc, zo = ops.split(z, 4, axis=-1)
    c = ops.sigmoid(zf) * c_prev + ops.sigmoid(zi) * ops.tanh(zc)
    return ops.sigmoid(zo) * ops.tanh(c), c


class _StaggeredStep(layers.Layer):
    """One member advancing ``rows`` staggered windows by one step, with the work that is equal
    for every row done once (the frame encoders, the first LSTM's input projection); each row
    keeps running sums of the embedding and its square for the pooled branch; the heads run
    only on the selected (published) row."""

    def __init__(self, parts: MoodLayers, **kwargs) -> None:
        super().__init__(**kwargs)
        self.parts = parts
        self.cell1, self.cell2, self.pooled_out = parts.cell1, parts.cell2, parts.pooled_out
        self.head_dense, self.lstm_out = parts.head_dense, parts.lstm_out

    def call(self, mfcc, lld, emb, h1, c1, h2, c2, emb_sum, emb_sq_sum, count, select):
        p, cfg = self.parts, self.parts.config
        z, e = p.encode(mfcc, lld, emb)  # (1, F), (1, D)
        x1 = ops.matmul(z, self.cell1.kernel) + self.cell1.bias  # once for all rows
        h1, c1 = _lstm_gates(x1 + ops.matmul(h1, self.cell1.recurrent_kernel), c1)
        x2 = ops.matmul(h1, self.cell2.kernel) + ops.matmul(h2, self.cell2.recurrent_kernel)
        h2, c2 = _lstm_gates(x2 + self.cell2.bias, c2)
        emb_sum, emb_sq_sum, count = emb_sum + e, emb_sq_sum + e * e, count + 1.0

        def picked(x):  # the published row
            return ops.sum(select * x, axis=0, keepdims=True)

        logits = 0.0
        if cfg.use_pooled:
            stats = mean_std(picked(emb_sum), picked(emb_sq_sum), picked(count))
            logits = logits + self.pooled_out(stats)
        if cfg.use_lstm:
            logits = logits + self.lstm_out(p.head_act(self.head_dense(picked(h2))))
        return p.activation(logits), h1, c1, h2, c2, emb_sum, emb_sq_sum, count


def build_step_model(members: list[MoodLayers], rows: int) -> keras.Model:
    """Streaming step model over ``rows`` staggered windows, averaging an ensemble of members.

    Inputs: one step's ``mfcc (1, 21, 20)``, ``lld (1, 260)``, ``emb (1, D)``; ``select``
    ``(rows, 1)``, one-hot of the row to publish; per member ``k`` the states ``m{k}_h1 ...
    m{k}_count`` of shape ``(rows, width)``. Outputs: ``y (1, 4|2)`` of the selected row (member
    mean) and the advanced states under the same names with an ``out_`` prefix.
    """
    d = members[0].norm.emb_dim
    mfcc = keras.Input((MFCC_FRAMES, N_MFCC), batch_size=1, name="mfcc")
    lld = keras.Input((N_LLD_STATS,), batch_size=1, name="lld")
    emb = keras.Input((d,), batch_size=1, name="emb")
    select = keras.Input((1,), batch_size=rows, name="select")
    inputs = [mfcc, lld, emb, select]
    outputs: dict[str, object] = {}
    ys = []
    for k, parts in enumerate(members):
        st = {
            n: keras.Input((w,), batch_size=rows, name=f"m{k}_{n}")
            for n, w in state_shapes(d).items()
        }
        inputs += list(st.values())
        y, *new = _StaggeredStep(parts, name=f"m{k}_step")(mfcc, lld, emb, *st.values(), select)
        ys.append(y)
        outputs.update({f"out_m{k}_{n}": v for n, v in zip(STATE_NAMES, new, strict=True)})
    outputs["y"] = ys[0] if len(ys) == 1 else ops.mean(ops.stack(ys, axis=0), axis=0)
    return keras.Model(inputs, outputs, name="mood_step")
