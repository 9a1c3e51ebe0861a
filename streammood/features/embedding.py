"""Serving side of the pretrained embedding branch: musicnn on LiteRT, without TensorFlow.

The LiteRT files come from :mod:`streammood.training.musicnn` (``models/musicnn/*.tflite``); this
module needs only ``ai_edge_litert`` and NumPy, so the serving path never imports TensorFlow.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from streammood.errors import StreammoodError
from streammood.layout import MEL_BANDS, MEL_PATCH_FRAMES
from streammood.native import filter_native_stderr

MSD_MTT_VGG_TFLITE = (
    Path(__file__).resolve().parents[2] / "models" / "musicnn" / "msd_mtt_vgg.tflite"
)
"""MSD + MTT musicnn and MSD VGG embedder (200 + 200 + 256 = 656 values per patch), as exported:
the same bytes as the shipped model's (:data:`DEFAULT_TFLITE`)."""
_SHIPPED_MODEL = Path(str(files("streammood"))) / "models" / "streammood-4q"  # an installed wheel
DEFAULT_TFLITE = (
    _SHIPPED_MODEL
    if _SHIPPED_MODEL.is_dir()
    else Path(__file__).resolve().parents[2] / "models" / "streammood-4q"  # checkout, editable
) / "embedder.tflite"
"""The embedder the product uses (features, training cache, model artifacts): the shipped model's
(the folder :func:`streammood.runtime.artifact.shipped_model_dir` finds), musicnn MSD + MTT
and the MSD VGG, two architectures whose embeddings read mood better together than either alone
(``research/probe_layers.py``, docs/benchmarks.md)."""


def is_litert_notice(line: bytes) -> bool:
    """LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``, printed on
    descriptor 2 when an interpreter allocates its tensors: not for the user's terminal."""
    return line.startswith(b"INFO: Created TensorFlow Lite ")


class EmbedderError(StreammoodError):
    """The embedding model file is missing or unusable, or input patches have the wrong shape."""


class MusicnnEmbedder:
    """Pretrained musicnn embeddings of log-mel patches, on the LiteRT interpreter.

    Parameters
    ----------
    tflite_path : path
        A LiteRT file written by :func:`streammood.training.musicnn.export_tflite` (input
        ``(batch, 187, 96)``, output ``(batch, D)``).
    num_threads : int
        Interpreter threads.

    Attributes
    ----------
    dim : int
        Embedding size ``D`` (200 per musicnn model).
    """

    def __init__(self, tflite_path: str | Path = DEFAULT_TFLITE, num_threads: int = 1) -> None:
        self.path = Path(tflite_path)
        if not self.path.is_file():
            raise EmbedderError(f"{self.path}: embedding model file not found")
        try:
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or ["?"])[0]
            raise EmbedderError(f"{self.path}: not a valid LiteRT model ({reason})") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise EmbedderError(
                f"{self.path}: expected one input and one output, got "
                f"{len(inputs)} and {len(outputs)}"
            )
        shape = tuple(inputs[0]["shape"])
        if shape[1:] != (MEL_PATCH_FRAMES, MEL_BANDS):
            raise EmbedderError(
                f"{self.path}: input shape {shape}, expected "
                f"(batch, {MEL_PATCH_FRAMES}, {MEL_BANDS})"
            )
        self._input = inputs[0]["index"]
        self._output = outputs[0]["index"]
        self.dim = int(outputs[0]["shape"][-1])
        self._batch = -1
        self._resize(1)

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self._interpreter.resize_tensor_input(self._input, [batch, MEL_PATCH_FRAMES, MEL_BANDS])
            filter_native_stderr(self._interpreter.allocate_tensors, is_litert_notice)
            self._batch = batch

    def embed(self, patches: np.ndarray) -> np.ndarray:
        """Embed log-mel patches.

        Parameters
        ----------
        patches : np.ndarray
            ``(k, 187, 96)`` log-mel patches (``log10(10000 x + 1)`` of the power mel spectrogram),
            or one patch ``(187, 96)``.

        Returns
        -------
        np.ndarray
            ``(k, D)`` float32 (``(D,)`` for a single 2-D patch).
        """
        patches = np.asarray(patches, dtype=np.float32)
        single = patches.ndim == 2
        if single:
            patches = patches[None]
        if patches.ndim != 3 or patches.shape[1:] != (MEL_PATCH_FRAMES, MEL_BANDS):
            raise EmbedderError(
                f"{self.path}: patches must be (k, {MEL_PATCH_FRAMES}, "
                f"{MEL_BANDS}), got {patches.shape}"
            )
        if len(patches) == 0:
            return np.zeros((0, self.dim), np.float32)
        self._resize(len(patches))
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(patches))
        self._interpreter.invoke()
        out = self._interpreter.get_tensor(self._output).copy()
        return out[0] if single else out


def hold_embeddings(patch_steps: np.ndarray, embeddings: np.ndarray, n_steps: int) -> np.ndarray:
    """Per-step pretrained embeddings, each held until the next patch.

    The live path computes a fresh embedding only at the steps in ``patch_steps`` (every
    ``EMBED_EVERY`` steps, from step 0) and reuses it for the steps in between; this spreads the
    same values over an offline step axis so training sees exactly what serving sees.

    Parameters
    ----------
    patch_steps : np.ndarray
        ``(k,)`` increasing step numbers at which a patch was embedded; must start at 0 when
        ``n_steps > 0``.
    embeddings : np.ndarray
        ``(k, D)`` embeddings of those patches.
    n_steps : int
        Number of steps.

    Returns
    -------
    np.ndarray
        ``(n_steps, D)`` float32.
    """
    patch_steps = np.asarray(patch_steps)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if n_steps == 0:
        return np.zeros((0, embeddings.shape[-1]), np.float32)
    if len(patch_steps) == 0 or patch_steps[0] != 0:
        raise ValueError("patch_steps must start at step 0")
    idx = np.searchsorted(patch_steps, np.arange(n_steps), side="right") - 1
    return embeddings[idx]
