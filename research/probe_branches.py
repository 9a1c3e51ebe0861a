"""How much does each branch of a model artifact move its outputs?

The model's logits are the sum of two branches: the seed's CNN-LSTM (MFCC CNN + LLD statistics,
two LSTMs, its head) and the linear read-out of the window's musicnn embedding statistics. This
script runs the artifact's Keras model(s) on every song of a data set twice — as shipped, and with
the LSTM branch's output layer set to zero (the read-out alone) — and reports how often the
quadrant changes (per song: the window's last real step; per step: every real step) and the mean
total-variation distance between the two probability vectors.

Run: ``.venv/bin/python -m research.probe_branches [--model models/streammood-4q]
[--data-dir ../shared/data/4q]`` (~1 minute with a warm feature cache).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from research.common import DATA_DIR, ROOT


def compare(full: np.ndarray, alone: np.ndarray) -> tuple[float, float]:
    """Share of rows whose argmax differs, and mean total-variation distance: ``(n, 4)`` each."""
    changed = float(np.mean(full.argmax(axis=1) != alone.argmax(axis=1)))
    return changed, float(0.5 * np.abs(full - alone).sum(axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "streammood-4q")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from streammood.runtime.artifact import load_artifact
    from streammood.training.metrics import last_real_step
    from streammood.training.pipeline import load_dataset

    artifact = load_artifact(args.model)
    arrays = load_dataset("4q", args.data_dir, artifact.task, None, args.jobs)
    from streammood.training.train import load_members, predict_windows  # TensorFlow from here

    members = load_members(artifact)
    full = predict_windows(members, arrays)
    for parts in members:
        for w in parts.lstm_out.weights:
            w.assign(np.zeros(w.shape, np.float32))
    alone = predict_windows(members, arrays)

    mask = arrays["mask"]
    rows = np.arange(len(full))
    last = last_real_step(mask)
    song = compare(full[rows, last], alone[rows, last])
    step = compare(full[mask], alone[mask])
    print(f"{artifact.name} v{artifact.version}, {len(members)} member(s), {len(full)} songs")
    print("| level | quadrant changed by the LSTM branch | mean total-variation distance |")
    print("|---|---|---|")
    print(f"| per song | {song[0]:.2%} | {song[1]:.4f} |")
    print(f"| per step | {step[0]:.2%} | {step[1]:.4f} |")


if __name__ == "__main__":
    main()
