"""Shared fixtures: the real data folder, real audio clips, a real Redis namespace."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("STREAMMOOD_DATA_DIR", ROOT.parent / "shared" / "data"))
REDIS_URL = os.environ.get("STREAMMOOD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``; tests that need it skip with a reason when it is absent."""
    if not (DATA_DIR / "4q").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set STREAMMOOD_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def fourq_dir(data_dir: Path) -> Path:
    return data_dir / "4q"


@pytest.fixture(scope="session")
def deam_dir(data_dir: Path) -> Path:
    path = data_dir / "deam-sample"
    if not path.is_dir():
        pytest.skip(f"DEAM sample not found at {path}")
    return path


@pytest.fixture(scope="session")
def fourq_clips(fourq_dir: Path) -> list[Path]:
    """One real 4Q MP3 per quadrant (sorted, deterministic)."""
    return [sorted((fourq_dir / q).glob("*.mp3"))[0] for q in ("Q1", "Q2", "Q3", "Q4")]


@pytest.fixture(scope="session")
def music_clip(fourq_clips: list[Path]) -> Path:
    """One real ~30 s music clip (22.05 kHz mono MP3)."""
    return fourq_clips[0]


@pytest.fixture()
def redis_namespace() -> Iterator[tuple[str, str]]:
    """``(redis_url, key_prefix)`` on the machine's real Redis; every key under the prefix is
    deleted afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis server at {REDIS_URL}")
    prefix = f"smtest-{uuid.uuid4().hex[:10]}"
    yield REDIS_URL, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
