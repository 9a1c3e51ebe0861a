"""The on-disk feature cache: keys, atomic entries, corrupt entries, and real extraction."""

import logging
import shutil

import numpy as np
import pytest

import streammood.datasets.cache as cache_mod
from streammood.datasets.cache import ClipFeatures, FeatureCache, extract_clips
from streammood.errors import StreammoodError
from streammood.features.embedding import MusicnnEmbedder

EMBED_DIM = MusicnnEmbedder().dim  # the product's embedder (models/musicnn/msd_mtt_vgg.tflite)


def _synthetic_clip(n=5, d=4, path="x.mp3"):
    rng = np.random.default_rng(n)
    return ClipFeatures(
        mfcc=rng.standard_normal((n, 21, 20)).astype(np.float32),
        lld=rng.standard_normal((n, 260)).astype(np.float32),
        emb=rng.standard_normal((n, d)).astype(np.float32),
        t_start=np.arange(n) * 0.5,
        path=path,
    )


def _assert_same(a: ClipFeatures, b: ClipFeatures):
    for name in ("mfcc", "lld", "emb", "t_start"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_save_load_roundtrip_is_atomic(tmp_path):
    cache = FeatureCache(tmp_path / "c", embedder_model=None)
    clip = _synthetic_clip()
    entry = cache.save("k" * 64, clip)
    assert entry.name == "k" * 64 + ".npz"
    assert [p.name for p in (tmp_path / "c").iterdir()] == [entry.name]  # no temp file left
    _assert_same(cache.load("k" * 64, "x.mp3"), clip)
    assert cache.load("j" * 64) is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_key"])
def test_corrupt_entry_is_a_miss_with_a_warning(tmp_path, caplog, damage):
    cache = FeatureCache(tmp_path, embedder_model=None)
    entry = cache.save("a" * 64, _synthetic_clip())
    if damage == "garbage":
        entry.write_bytes(b"not an npz file")
    elif damage == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    else:
        shutil.copy(cache.save("b" * 64, _synthetic_clip(6)), entry)
    with caplog.at_level(logging.WARNING):
        assert cache.load("a" * 64, "song.mp3") is None
    assert "corrupt" in caplog.text and "song.mp3" in caplog.text


def test_key_follows_content_not_name(tmp_path, fourq_clips):
    cache = FeatureCache(tmp_path / "c", embedder_model=None)
    a, b = tmp_path / "a.mp3", tmp_path / "b.mp3"
    shutil.copy(fourq_clips[0], a)
    shutil.copy(fourq_clips[0], b)
    assert cache.key(a) == cache.key(b)
    b.write_bytes(b.read_bytes()[:-1])
    assert cache.key(a) != cache.key(b)


def test_key_follows_feature_version_and_embedder(tmp_path, fourq_clips, monkeypatch):
    m1, m2 = tmp_path / "m1.tflite", tmp_path / "m2.tflite"
    m1.write_bytes(b"model one")
    m2.write_bytes(b"model two")
    clip = fourq_clips[0]
    k1 = FeatureCache(tmp_path, embedder_model=m1).key(clip)
    assert FeatureCache(tmp_path, embedder_model=m2).key(clip) != k1
    assert FeatureCache(tmp_path, embedder_model=None).key(clip) != k1
    monkeypatch.setattr(cache_mod, "FEATURE_VERSION", "test-bumped")
    assert FeatureCache(tmp_path, embedder_model=m1).key(clip) != k1


def test_missing_embedder_model_is_a_clear_error(tmp_path):
    with pytest.raises(StreammoodError, match="nope.tflite"):
        FeatureCache(tmp_path, embedder_model=tmp_path / "nope.tflite")


# --- real extraction --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, fourq_clips):
    """Two real clips extracted (serially) into a module cache with the shipped embedder."""
    pytest.importorskip("streammood.features.extractor")
    root = tmp_path_factory.mktemp("features")
    cache = FeatureCache(root)
    if cache.embedder_model is None:
        pytest.skip("no embedder model under models/musicnn/")
    clips = extract_clips(fourq_clips[:2], cache, jobs=1, progress=False)
    return root, cache, clips


def _copy_cache(extracted, tmp_path) -> FeatureCache:
    root, cache, _ = extracted
    shutil.copytree(root, tmp_path / "features")
    return FeatureCache(tmp_path / "features", embedder_model=cache.embedder_model)


def test_extraction_shapes_and_counts(extracted, fourq_clips):
    root, cache, clips = extracted
    assert cache.computed == 2 and cache.hits == 0 and cache.failed == 0
    assert [c.path for c in clips] == [str(p) for p in fourq_clips[:2]]
    for c in clips:
        n = c.n_steps
        assert 50 <= n <= 61
        assert c.mfcc.shape == (n, 21, 20) and c.lld.shape == (n, 260)
        assert c.emb.shape == (n, EMBED_DIM) and c.emb.dtype == np.float32
        np.testing.assert_allclose(c.t_start, np.arange(n) * 0.5)
        assert np.isfinite(c.mfcc).all() and np.isfinite(c.lld).all() and np.isfinite(c.emb).all()
    assert len(list(root.glob("*.npz"))) == 2


def test_second_run_reuses_the_cache(extracted, fourq_clips, tmp_path):
    _, _, first = extracted
    cache = _copy_cache(extracted, tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in cache.root.glob("*.npz")}
    again = extract_clips(fourq_clips[:2], cache, jobs=1, progress=False)
    assert cache.hits == 2 and cache.computed == 0
    assert {p: p.stat().st_mtime_ns for p in cache.root.glob("*.npz")} == mtimes
    for a, b in zip(first, again, strict=True):
        _assert_same(a, b)


def test_corrupt_entry_is_recomputed(extracted, fourq_clips, tmp_path):
    _, _, first = extracted
    cache = _copy_cache(extracted, tmp_path)
    entry = cache.entry(cache.key(fourq_clips[0]))
    entry.write_bytes(b"\x00" * 100)
    again = extract_clips(fourq_clips[:2], cache, jobs=1, progress=False)
    assert cache.hits == 1 and cache.computed == 1
    _assert_same(first[0], again[0])
    _assert_same(first[0], cache.load(cache.key(fourq_clips[0])))


def test_changed_content_invalidates(extracted, fourq_clips, tmp_path):
    _, _, first = extracted
    cache = _copy_cache(extracted, tmp_path)
    renamed = tmp_path / "renamed.mp3"
    shutil.copy(fourq_clips[0], renamed)
    (clip,) = extract_clips([renamed], cache, jobs=1, progress=False)
    assert cache.hits == 1 and cache.computed == 0  # same content under another name: a hit
    _assert_same(first[0], clip)
    data = fourq_clips[0].read_bytes()
    renamed.write_bytes(data[: len(data) // 2])  # half the MP3: new content
    (clip,) = extract_clips([renamed], cache, jobs=1, progress=False)
    assert cache.computed == 1
    assert clip.n_steps < first[0].n_steps * 0.6


def test_undecodable_clip_is_skipped_by_name(extracted, fourq_clips, tmp_path, caplog):
    cache = _copy_cache(extracted, tmp_path)
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(np.random.default_rng(0).bytes(50_000))
    missing = tmp_path / "gone.mp3"
    with caplog.at_level(logging.WARNING):
        clips = extract_clips([bad, fourq_clips[0], missing], cache, jobs=1, progress=False)
    assert [c.path for c in clips] == [str(fourq_clips[0])]
    assert cache.failed == 2
    assert "broken.mp3" in caplog.text and "gone.mp3" in caplog.text
    with pytest.raises(StreammoodError, match="no clip"):
        extract_clips([bad], cache, jobs=1, progress=False)


def test_parallel_extraction_equals_serial(extracted, fourq_clips, tmp_path):
    _, cache, first = extracted
    fresh = FeatureCache(tmp_path / "par", embedder_model=cache.embedder_model)
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"ID3" + bytes(4000))
    clips = extract_clips([fourq_clips[0], bad, fourq_clips[1]], fresh, jobs=2, progress=False)
    assert fresh.computed == 2 and fresh.failed == 1
    for a, b in zip(first, clips, strict=True):
        _assert_same(a, b)


def test_decoder_complaints_are_one_line_per_run(fourq_clips, tmp_path, caplog, capfd):
    """Extraction workers do not print the MP3 decoder's complaints clip by clip: the parent
    logs one line with the number of damaged clips and of messages, counted as a lone decode
    counts them."""
    import logging

    from streammood.audio.decode import DecoderMessages, load_audio

    clips = fourq_clips[:3]
    expected = []
    for path in clips:
        messages = DecoderMessages(path)
        load_audio(path, messages)
        expected.append(messages.count)
    assert any(expected), "the first 4Q clips have damaged frames"
    capfd.readouterr()
    cache = FeatureCache(tmp_path / "features", embedder_model=None)
    with caplog.at_level(logging.WARNING, logger="streammood.datasets.cache"):
        extract_clips(clips, cache, jobs=1, progress=False)
    lines = [r.getMessage() for r in caplog.records if "damaged MP3 frames" in r.getMessage()]
    damaged = sum(1 for n in expected if n)
    assert lines == [
        f"{damaged} of 3 clips extracted had damaged MP3 frames, concealed by the decoder "
        f"({sum(expected)} decoder messages in all, libmpg123); features computed anyway"
    ]
    err = capfd.readouterr().err
    assert "libmpg123" not in err and "had decode errors" not in err
