"""What the model adds to each 500 ms step, against Keras ``model.predict`` on the full window.

Per step, on real music features (medians of many calls, 1 thread, this machine):

* pretrained branch: the artifact's embedder (musicnn MSD + MTT, MSD VGG) on LiteRT for one 3 s
  patch, and averaged per step (one patch every ``EMBED_EVERY`` steps);
* frame encoders: the step model's per-step part (MFCC-CNN, normalisers, the first LSTM's input
  projection), converted alone to LiteRT and timed the same way;
* sequence core: one call of the artifact's step model (60 staggered states, all members, one
  batched LiteRT call) minus the frame encoders;
* the naive reference, measured in the same run: Keras ``model.predict`` of every member on the
  full 60-step window, every step.

Training time is read from the artifact's manifest (what ``streammood train`` measured).

Run::

    .venv/bin/python benchmarks/bench_model.py [--model models/streammood-4q] [--clip FILE]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def _encoder_call(members, emb_dim: int):
    """A LiteRT call of the members' frame encoders alone (what the step model does once per
    step, not once per row): MFCC-CNN, normalisers and the first LSTM's input projection."""
    import contextlib
    import io

    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from keras import ops

    from streammood.layout import MFCC_FRAMES, N_LLD_STATS, N_MFCC

    mfcc = keras.Input((MFCC_FRAMES, N_MFCC), batch_size=1)
    lld = keras.Input((N_LLD_STATS,), batch_size=1)
    e = keras.Input((emb_dim,), batch_size=1)
    outs = []
    for parts in members:
        z, _ = parts.encode(mfcc, lld, e)
        outs.append(ops.matmul(z, parts.cell1.kernel) + parts.cell1.bias)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model([mfcc, lld, e], outs))
    with contextlib.redirect_stdout(io.StringIO()):
        interpreter = Interpreter(model_content=converter.convert(), num_threads=1)
    interpreter.allocate_tensors()
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], np.zeros(d["shape"], np.float32))
    return interpreter.invoke


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "streammood-4q")
    parser.add_argument("--clip", type=Path, default=None, help="audio file (default: a 4Q clip)")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    from streammood.audio.decode import load_audio
    from streammood.features.extractor import extract_offline
    from streammood.layout import EMBED_EVERY, WINDOW_STEPS
    from streammood.runtime.artifact import load_artifact
    from streammood.runtime.rolling import MoodRuntime

    clip = args.clip or sorted((ROOT.parent / "shared" / "data" / "4q" / "Q1").glob("*.mp3"))[0]
    artifact = load_artifact(args.model)
    y, sr = load_audio(clip)
    embedder = artifact.embedder(num_threads=1)
    feats = extract_offline(y, sr, embedder)
    patches, emb, steps = feats.mel_patches, feats.emb, list(feats.steps())
    n = feats.n_steps

    i = iter(range(10**9))
    patch_ms = median_ms(lambda: embedder.embed(patches[next(i) % len(patches)]), args.repeats // 4)
    runtime = MoodRuntime(artifact)
    for t in range(WINDOW_STEPS):  # fill every staggered state
        runtime.push(steps[t % n])
    j = iter(range(10**9))

    def one_step() -> None:
        runtime.push(steps[next(j) % n])

    core_ms = median_ms(one_step, args.repeats)

    from streammood.training.architecture import build_window_model
    from streammood.training.train import load_members  # TensorFlow from here on

    members_layers = load_members(artifact)
    models = [build_window_model(p) for p in members_layers]
    encoder_ms = median_ms(_encoder_call(members_layers, artifact.emb_dim), args.repeats)
    window = [
        feats.mfcc[None, :WINDOW_STEPS],
        feats.lld[None, :WINDOW_STEPS],
        emb[None, :WINDOW_STEPS],
    ]

    def naive() -> None:
        for m in models:
            m.predict(window, verbose=0)

    naive()
    naive_ms = median_ms(naive, max(5, args.repeats // 20))

    members = artifact.manifest["members"]
    added = patch_ms / EMBED_EVERY + core_ms
    training = artifact.manifest.get("training", {})
    plural = "s" if members != 1 else ""
    print(f"model {artifact.name} v{artifact.version}: {members} member{plural}, clip {clip.name}")
    dim = artifact.manifest["emb_dim"]
    print(f"embedder ({dim} values), one 3 s patch (LiteRT, 1 thread): {patch_ms:8.2f} ms")
    per_step = patch_ms / EMBED_EVERY
    print(f"  per step (one patch every {EMBED_EVERY} steps):                {per_step:8.2f} ms")
    print(
        f"step model (encoders + core), 60 states, all members: {core_ms:8.3f} ms"
        f"  ({core_ms / members:.3f} ms per member)"
    )
    print(f"  frame encoders (MFCC-CNN, LSTM input projection):   {encoder_ms:8.3f} ms")
    print(f"  sequence core (60 staggered states):                 {core_ms - encoder_ms:8.3f} ms")
    print(f"everything the model adds per step (average):         {added:8.2f} ms")
    print(f"naive: Keras predict on the 60-step window, members:   {naive_ms:8.1f} ms")
    print(f"ratio naive / streaming step model:                    {naive_ms / core_ms:8.0f}x")
    if training.get("members"):
        teachers = training["members"]
        secs = sum(m["seconds"] for m in teachers)
        print(
            f"training: {secs:.0f} s for {len(teachers)} members "
            f"({', '.join(str(m['epochs_run']) for m in teachers)} epochs)"
        )
        refit = training.get("refit")
        if "student" in training:
            student = training["student"]
            print(
                f"  + distilled student: {student['seconds']:.0f} s "
                f"({student['epochs_run']} epochs)"
                + ("" if refit else "; the student is what ships")
            )
        if refit:
            print(
                f"  + refit on all {refit[0]['train_songs']} songs: "
                f"{sum(r['seconds'] + r.get('readout_seconds', 0) for r in refit):.0f} s "
                f"({', '.join(str(r['epochs_run']) for r in refit)} epochs); this is what ships"
            )


if __name__ == "__main__":
    main()
