"""The two processors every job chains: audio blocks → model inputs, and model inputs → moods.

:class:`FeatureStage` (capture side) and :class:`MoodStage` (inference side) are plain objects
with no I/O; ``listen`` runs them in one process, ``capture``/``infer`` put a Redis stream of
feature frames between them, and ``analyze`` replays files through both. Same code every way, so
the messages are identical.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from streammood.bus.codec import FrameError, encode_frame
from streammood.bus.schema import ModelRef, MoodMessage
from streammood.features.extractor import StreamingExtractor
from streammood.features.layout import (
    MFCC_FRAMES,
    MFCC_HISTORY,
    MFCC_STEP_SAMPLES,
    N_LLD_STATS,
    N_MFCC,
)
from streammood.features.mfcc import mfcc_block
from streammood.model.artifact import ModelArtifact
from streammood.model.labels import QUADRANTS
from streammood.model.runtime import HeldEmbedding, MoodRuntime, StepModel


@dataclass(frozen=True)
class ModelInputs:
    """Everything the model needs for one step (what a feature frame carries).

    ``mfcc (21, 20)``, ``lld (260,)``, ``emb (D,)`` float32; times in seconds of stream time.
    """

    seq: int
    t_start: float
    t_end: float
    mfcc: np.ndarray
    lld: np.ndarray
    emb: np.ndarray


def embedder_id(artifact: ModelArtifact) -> str:
    """Short id of the artifact's embedder: frames carry it so ``infer`` can refuse frames made
    with another embedding model."""
    return artifact.manifest["files"]["embedder"]["sha256"][:16]


def encode_inputs(source: str, inputs: ModelInputs, embedder: str) -> bytes:
    """One feature frame for the bus."""
    return encode_frame(
        {
            "source": source,
            "seq": inputs.seq,
            "t_start": inputs.t_start,
            "t_end": inputs.t_end,
            "embedder": embedder,
        },
        {"mfcc": inputs.mfcc, "lld": inputs.lld, "emb": inputs.emb},
    )


def decode_inputs(
    header: dict, arrays: dict[str, np.ndarray], embedder: str, emb_dim: int
) -> ModelInputs:
    """Check a decoded frame against the model and turn it into :class:`ModelInputs`.

    Raises
    ------
    FrameError
        Wrong embedder, missing array or wrong shape.
    """
    if header.get("embedder") != embedder:
        raise FrameError(
            f"frame of {header.get('source')} seq {header.get('seq')} was made with embedder "
            f"{header.get('embedder')!r}, this model uses {embedder!r}"
        )
    expected = {"mfcc": (MFCC_FRAMES, N_MFCC), "lld": (N_LLD_STATS,), "emb": (emb_dim,)}
    for name, shape in expected.items():
        if name not in arrays:
            raise FrameError(f"frame seq {header.get('seq')} lacks array {name!r}")
        if arrays[name].shape != shape:
            raise FrameError(
                f"frame seq {header.get('seq')}: {name} has shape {arrays[name].shape}, not {shape}"
            )
        if not np.all(np.isfinite(arrays[name])):
            raise FrameError(f"frame seq {header.get('seq')}: {name} holds NaN or inf")
    return ModelInputs(
        int(header["seq"]),
        float(header["t_start"]),
        float(header["t_end"]),
        arrays["mfcc"],
        arrays["lld"],
        arrays["emb"],
    )


class FeatureStage:
    """Audio blocks at ``sample_rate`` → :class:`ModelInputs`, one per 500 ms step.

    Streaming extractor (resampling, 500 ms steps, MFCC, openSMILE fed ahead, mel patch) → held
    pretrained embedding. A step comes out once ~150 ms of the following audio has been pushed
    (openSMILE's look-ahead; push small blocks, ≤ 100 ms, to stay near that).
    """

    def __init__(self, artifact: ModelArtifact, sample_rate: int, num_threads: int = 1) -> None:
        # musicnn runs on its own thread as soon as a step's mel patch exists, overlapping the
        # ~150 ms that the step's openSMILE statistics wait for look-ahead audio (LiteRT releases
        # the GIL); the step then takes the finished embedding. Same values, less latency.
        self._musicnn = ThreadPoolExecutor(1, thread_name_prefix="streammood-musicnn")
        self._ahead: dict[int, Future] = {}
        self.extractor = StreamingExtractor(sample_rate, on_patch=self._embed_ahead)
        # warm up before audio flows: the first MFCC block loads librosa's tables (~0.6 s) and the
        # first musicnn call sets its interpreter up (~0.1 s); neither may delay step 0
        mfcc_block(np.zeros(MFCC_HISTORY, np.float32), np.zeros(MFCC_STEP_SAMPLES, np.float32))
        self.embedding = HeldEmbedding(artifact, num_threads=num_threads)
        self.embedding.warm_up()

    def push(self, block: np.ndarray) -> list[ModelInputs]:
        """Add ``(n,)`` float32 samples at ``sample_rate``; return the steps now complete."""
        return self._inputs(self.extractor.push(block))

    def _embed_ahead(self, seq: int, patch: np.ndarray) -> None:
        self._ahead[seq] = self._musicnn.submit(self.embedding.embed, patch)

    def finish(self) -> list[ModelInputs]:
        """End of stream: the last complete steps."""
        try:
            return self._inputs(self.extractor.finish())
        finally:
            self._musicnn.shutdown(wait=True, cancel_futures=True)

    def run(self, blocks: Iterable[np.ndarray]) -> Iterator[ModelInputs]:
        for block in blocks:
            yield from self.push(block)
        yield from self.finish()

    def _inputs(self, features) -> list[ModelInputs]:
        out = []
        for f in features:
            if f.mel_patch is None:
                emb = self.embedding(None)
            elif (ahead := self._ahead.pop(f.seq, None)) is not None:
                emb = self.embedding.hold(ahead.result())
            else:
                emb = self.embedding(f.mel_patch)
            out.append(ModelInputs(f.seq, f.t_start, f.t_end, f.mfcc, f.lld, emb))
        return out


class MoodStage:
    """:class:`ModelInputs` of one source → :class:`MoodMessage` (exact rolling window)."""

    def __init__(
        self, artifact: ModelArtifact, source: str, step_model: StepModel | None = None
    ) -> None:
        self.source = source
        self.runtime = MoodRuntime(artifact, step_model=step_model)
        self.runtime.warm_up()
        self.model = ModelRef(artifact.name, artifact.version)
        self.expected_seq: int | None = None
        self.gaps = 0
        """Steps missing from the input (dropped upstream); the window runs on over them."""

    def __call__(self, inputs: ModelInputs) -> MoodMessage:
        if self.expected_seq is not None and inputs.seq < self.expected_seq:
            self.runtime.reset()  # the source restarted (a new capture session)
        elif self.expected_seq is not None and inputs.seq > self.expected_seq:
            self.gaps += inputs.seq - self.expected_seq
        self.expected_seq = inputs.seq + 1
        pred = self.runtime.step(inputs.mfcc, inputs.lld, inputs.emb)
        return MoodMessage(
            source=self.source,
            seq=inputs.seq,
            t_start=inputs.t_start,
            t_end=inputs.t_end,
            valence=pred.valence,
            arousal=pred.arousal,
            quadrant=pred.quadrant,
            probs={q: float(p) for q, p in zip(QUADRANTS, pred.probs, strict=True)},
            window_steps=pred.window_steps,
            model=self.model,
            emitted_at=time.time(),
        )
