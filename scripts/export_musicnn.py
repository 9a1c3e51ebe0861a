#!/usr/bin/env python
"""Rebuild the LiteRT musicnn embedders in ``models/musicnn`` from the musicnn wheel's checkpoints
(TensorFlow; ``pip install --no-deps musicnn==0.1.0``).

Usage: ``.venv/bin/python scripts/export_musicnn.py --out models/musicnn [--which MSD MTT]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from streammood.training import musicnn


def main(argv: Sequence[str] | None = None) -> None:
    """Rebuild the shipped LiteRT files ."""
    parser = argparse.ArgumentParser(
        description=main.__doc__
    )
    parser.add_argument("--out", type=Path, default=Path("models/musicnn"), help="output folder")
    parser.add_argument(
        "--which",
        nargs="+",
        choices=musicnn.MODELS,
        default=None,
        help="build one file for these models instead of the shipped set",
    )
    args = parser.parse_args(argv)
    files = (
        musicnn.SHIPPED_FILES
        if args.which is None
        else {"_".join(w.lower() for w in args.which) + ".tflite": tuple(args.which)}
    )
    for filename, which in files.items():
        path = musicnn.export_tflite(musicnn.build_embedder(which), args.out / filename)
        print(f"{path}: {'+'.join(which)} embedding, {path.stat().st_size / 1e6:.1f} MB")



if __name__ == "__main__":
    main()
