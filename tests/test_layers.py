"""The data flow, enforced: a module imports only its own stage and earlier ones, and TensorFlow
only under ``streammood/training/`` (read from the source with :mod:`ast`, so lazy imports inside
functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "streammood"

LAYERS = {
    "__init__": 0,
    "layout": 0,
    "errors": 0,
    "stage": 0,
    "native": 0,
    "audio": 1,
    "features": 2,
    "runtime": 3,
    "bus": 4,
    "workers": 5,
    "datasets": 6,
    "training": 7,
    "dashboard": 8,
    "osc": 8,
    "demo": 8,
    "cli": 9,
    "console": 9,
    "__main__": 10,
}
"""Rank of each top-level module or package of ``streammood``, in the order of the flow;
``datasets`` and ``training`` sit beside it (nothing in the flow imports them); ``dashboard`` and
``osc`` consume the bus, beside the demo."""

TENSORFLOW = ("tensorflow", "keras", "tf_keras")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _stage(path: Path, root: Path = PACKAGE) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def _imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ["streammood", *path.relative_to(root).parent.parts]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            if name == "streammood":  # from streammood import audio
                out += [(node.lineno, f"streammood.{alias.name}") for alias in node.names]
    return out


def test_every_module_has_a_layer():
    assert {_stage(p) for p in _modules()} <= set(LAYERS), "add new stages to LAYERS"


def _upward(path: Path, root: Path = PACKAGE) -> list[str]:
    """Imports of a module from a later stage of the flow."""
    own = _stage(path, root)
    return [
        f"{path.relative_to(root)}:{line} imports {name} ({target} comes after {own})"
        for line, name in _imports(path, root)
        if name.startswith("streammood.")
        and (target := name.split(".")[1]) in LAYERS
        and LAYERS[target] > LAYERS[own]
    ]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_flow(path: Path):
    wrong = _upward(path)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_tensorflow_only_in_training(path: Path):
    if _stage(path) == "training":
        return
    wrong = [
        f"{path.relative_to(PACKAGE)}:{line} imports {name}"
        for line, name in _imports(path)
        if name.split(".")[0] in TENSORFLOW
        or (name.startswith("streammood.training") and _stage(path) not in ("cli", "__main__"))
    ]
    assert not wrong, "\n".join(wrong)


def test_the_scan_sees_wrong_imports(tmp_path: Path):
    """The checker itself: upward imports, lazy or relative, are caught; downward ones pass."""
    root = tmp_path / "streammood"
    (root / "features").mkdir(parents=True)
    bad = root / "features" / "probe.py"
    bad.write_text(
        "from streammood.audio import framer\n"
        "from ..runtime import rolling\n"
        "def f():\n    from streammood.workers import listen\n"
    )
    assert _imports(bad, root) == [
        (1, "streammood.audio"),
        (2, "streammood.runtime"),
        (4, "streammood.workers"),
    ]
    wrong = _upward(bad, root)
    assert len(wrong) == 2
    assert "runtime comes after features" in wrong[0] and "workers comes after" in wrong[1]
