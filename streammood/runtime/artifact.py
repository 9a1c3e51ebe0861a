"""The model artifact: a folder that carries everything serving needs, checked on load.

Layout::

    manifest.json     name, version, task, label order, feature-layout version, files + sha256,
                      training data description, metrics
    step.tflite       LiteRT streaming step (explicit LSTM states, staggered rows)
    embedder.tflite   LiteRT pretrained embedding branch (musicnn), mel patch -> (D,)
    norm.npz          feature normalisation statistics from training (also baked into the models)
    keras/member*.keras   the Keras window models, for further training and evaluation

Loading imports no TensorFlow. The Keras members are for training only: a copy without them (the
installed package's, which carries the serving files alone) still loads and verifies.

Which model serves (:func:`resolve_model_dir`): ``--model`` (the ``path`` argument), else
``$STREAMMOOD_MODEL``, else the shipped model (:func:`shipped_model_dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from streammood.errors import StreammoodError
from streammood.features.embedding import EmbedderError, MusicnnEmbedder
from streammood.layout import FEATURE_VERSION

ARTIFACT_FORMAT = "streammood-model"
ARTIFACT_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHIPPED_MODEL = "streammood-4q"
"""Folder name of the shipped model (``models/streammood-4q`` in the repository)."""
MODEL_ENV = "STREAMMOOD_MODEL"
"""Environment variable naming the default model folder (e.g. in a container image)."""


class ModelError(StreammoodError):
    """A model artifact is missing, corrupt or built for other features."""


def shipped_model_dir() -> Path:
    """The shipped model's folder: the installed package's copy, ``streammood/models/streammood-4q``
    (``pyproject.toml`` maps the repository's ``models/`` there, serving files only), found with
    :mod:`importlib.resources`; in an editable install or a source checkout, where the package
    folder has no ``models/``, the repository's ``models/streammood-4q``."""
    package_copy = Path(str(resources.files("streammood").joinpath("models", SHIPPED_MODEL)))
    if package_copy.is_dir():
        return package_copy
    return Path(__file__).resolve().parents[2] / "models" / SHIPPED_MODEL


def resolve_model_dir(path: str | Path | None = None) -> tuple[Path, str]:
    """``(folder, where it came from)`` of the model to load: ``path`` (``--model``), else
    ``$STREAMMOOD_MODEL``, else :func:`shipped_model_dir`; empty strings count as unset."""
    if path is not None and str(path) != "":
        return Path(path), "--model"
    if env := os.environ.get(MODEL_ENV):
        return Path(env), f"${MODEL_ENV}"
    return shipped_model_dir(), "the shipped model"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelArtifact:
    """A loaded, verified artifact folder."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.manifest["labels"])

    @property
    def emb_dim(self) -> int:
        return int(self.manifest["emb_dim"])

    @property
    def rows(self) -> int:
        """Staggered states in the step model (= window length in steps)."""
        return int(self.manifest["window_steps"])

    def file(self, key: str) -> Path:
        return self.path / self.manifest["files"][key]["path"]

    @property
    def embedder_id(self) -> str:
        """Short id of the embedder: feature frames carry it so ``infer`` can refuse frames made
        with another embedding model."""
        return str(self.manifest["files"]["embedder"]["sha256"][:16])

    def embedder(self, num_threads: int = 1) -> MusicnnEmbedder:
        """The artifact's pretrained embedding on its own LiteRT interpreter (one per thread).

        Raises
        ------
        ModelError
            The file is not a usable embedder, or its size differs from the manifest's.
        """
        try:
            embedder = MusicnnEmbedder(self.file("embedder"), num_threads=num_threads)
        except EmbedderError as exc:
            raise ModelError(str(exc)) from None
        if embedder.dim != self.emb_dim:
            raise ModelError(
                f"{self.path}: embedder gives {embedder.dim} values, manifest says {self.emb_dim}"
            )
        return embedder

    def keras_members(self) -> list[Path]:
        """The Keras window models (training and evaluation only).

        Raises
        ------
        ModelError
            This copy leaves them out (the installed package ships the serving files only).
        """
        members = [self.path / p for p in self.manifest.get("keras_members", [])]
        if missing := [p for p in members if not p.is_file()]:
            raise ModelError(
                f"{self.path}: no Keras member {missing[0].relative_to(self.path)} in this copy "
                "(an installed package carries the serving files only); use the repository's "
                f"models/{SHIPPED_MODEL} or the training output folder"
            )
        return members


def write_manifest(path: Path, manifest: dict[str, Any], files: dict[str, str]) -> None:
    """Write ``manifest.json`` for files already in ``path``; ``files`` maps role → file name."""
    manifest = dict(manifest)
    manifest.update(
        format=ARTIFACT_FORMAT,
        format_version=ARTIFACT_FORMAT_VERSION,
        feature_version=FEATURE_VERSION,
        files={k: {"path": v, "sha256": sha256_of(path / v)} for k, v in files.items()},
    )
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def load_artifact(path: str | Path | None = None, *, verify: bool = True) -> ModelArtifact:
    """Read and check an artifact folder (default: ``$STREAMMOOD_MODEL``, else the shipped model;
    see :func:`resolve_model_dir`). Every file the manifest lists must be there with its checksum,
    except the Keras members (training only), which are checked when present.

    Raises
    ------
    ModelError
        No manifest, not a streammood model, a different feature-layout version, a missing
        file or one whose checksum differs (corrupt or edited).
    """
    folder, source = resolve_model_dir(path)
    if folder.is_file() and folder.name == MANIFEST:
        folder = folder.parent
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        hint = "" if source == "--model" else f" ({source})"
        raise ModelError(f"{folder}: no such model folder{hint}")
    if not manifest_path.is_file():
        raise ModelError(f"{folder}: not a streammood model (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise ModelError(
            f"{folder}: not a streammood model (manifest format is not {ARTIFACT_FORMAT})"
        )
    if manifest.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise ModelError(
            f"{folder}: artifact format {manifest.get('format_version')} is not supported "
            f"(this streammood reads {ARTIFACT_FORMAT_VERSION})"
        )
    if str(manifest.get("feature_version")) != FEATURE_VERSION:
        raise ModelError(
            f"{folder}: model built for feature layout v{manifest.get('feature_version')}, "
            f"this streammood computes v{FEATURE_VERSION}; retrain or use a matching release"
        )
    training_only = set(manifest.get("keras_members", []))
    for key, entry in manifest.get("files", {}).items():
        file = folder / entry["path"]
        if not file.is_file() and entry["path"] in training_only:
            continue  # a serving copy (the installed package's): keras_members() says so
        if not file.is_file():
            raise ModelError(f"{folder}: missing file {entry['path']} ({key})")
        if verify and sha256_of(file) != entry["sha256"]:
            raise ModelError(f"{file}: checksum mismatch, the file is corrupt or was modified")
    for key in ("step", "embedder"):
        if key not in manifest.get("files", {}):
            raise ModelError(f"{folder}: manifest names no {key} model")
    return ModelArtifact(folder, manifest)
