"""Pictures are written as real, non-blank PNGs; bad input and bad paths fail clearly."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from streammood.errors import StreammoodError
from streammood.runtime.labels import QUADRANTS, quadrant_index, va_from_probs
from streammood.training.plots import plot_confusion_matrix, plot_trajectory, plot_va_plane

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_width: int = 300, min_height: int = 300) -> np.ndarray:
    """Read back a written picture and check it is a sizeable, non-blank PNG."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height
    assert float(image[..., :3].var()) > 1e-3  # not a blank canvas
    return image


def test_confusion_matrix_png(tmp_path: Path) -> None:
    cm = np.array([[30, 5, 3, 2], [4, 25, 1, 10], [6, 2, 28, 4], [1, 9, 5, 25]])
    out = plot_confusion_matrix(cm, tmp_path / "sub" / "cm.png", title="test split")
    assert out == tmp_path / "sub" / "cm.png"
    assert_png(out)
    raw = plot_confusion_matrix(cm, tmp_path / "raw.png", normalize=False)
    assert_png(raw)


def test_confusion_matrix_with_an_empty_row(tmp_path: Path) -> None:
    cm = np.array([[3, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 1, 4]])
    assert_png(plot_confusion_matrix(cm, tmp_path / "cm.png"))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        plot_confusion_matrix(np.ones((3, 3)), tmp_path / "bad.png")


def test_va_plane_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 120)
    probs = rng.dirichlet(np.ones(4), 120)
    assert_png(plot_va_plane(va_from_probs(probs), tmp_path / "va.png", labels=y))
    assert_png(plot_va_plane(va_from_probs(probs), tmp_path / "va_plain.png"))
    with pytest.raises(ValueError, match="labels"):
        plot_va_plane(va_from_probs(probs), tmp_path / "bad.png", labels=y[:5])


@pytest.mark.parametrize("kind", ["names", "indices", "probs"])
def test_trajectory_png(tmp_path: Path, kind: str) -> None:
    t = np.arange(80) * 0.5
    valence, arousal = 0.7 * np.sin(t / 8), 0.6 * np.cos(t / 5)
    idx = quadrant_index(valence, arousal)
    quadrant = {
        "names": np.array(QUADRANTS)[idx],
        "indices": idx,
        "probs": np.random.default_rng(1).dirichlet(np.ones(4), len(t)),
    }[kind]
    image = assert_png(
        plot_trajectory(t, valence, arousal, quadrant, tmp_path / f"traj_{kind}.png"),
        min_width=900,
    )
    assert image.shape[1] > image.shape[0]  # two panels side by side


def test_trajectory_single_step(tmp_path: Path) -> None:
    assert_png(plot_trajectory([0.5], [0.2], [-0.3], ["PP"], tmp_path / "one.png"))


def test_trajectory_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown quadrant name 'XX'"):
        plot_trajectory([0, 0.5], [0, 0], [0, 0], ["AP", "XX"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="equal-length"):
        plot_trajectory([0, 0.5], [0, 0, 0], [0, 0], ["AP", "AP"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="quadrant must have shape"):
        plot_trajectory([0, 0.5], [0, 0], [0, 0], np.ones((2, 3)), tmp_path / "bad.png")


def test_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StreammoodError, match=r"cannot write picture .*file.*cm\.png"):
        plot_confusion_matrix(np.eye(4, dtype=int), blocker / "cm.png")


def test_plots_leave_the_global_backend_alone(tmp_path: Path) -> None:
    before = matplotlib.get_backend()
    plot_va_plane(np.zeros((3, 2)), tmp_path / "va.png")
    assert matplotlib.get_backend() == before
