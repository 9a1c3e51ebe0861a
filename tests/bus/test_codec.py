import json
import struct

import numpy as np
import pytest

from streammood.bus.codec import FRAME_MAGIC, FrameError, decode_frame, encode_frame

HEADER = {"source": "src1", "seq": 3, "t_start": 1.5, "t_end": 2.0, "feature_version": "1"}


def _arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "mfcc": rng.standard_normal((21, 20)).astype(np.float32),
        "lld": rng.standard_normal(260).astype(np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }


def test_round_trip_is_bit_exact_and_keeps_extra_header_fields():
    arrays = _arrays(np.random.default_rng(0))
    arrays["lld"][5] = np.nan
    arrays["lld"][6] = np.inf
    header, back = decode_frame(encode_frame(HEADER, arrays))
    assert {k: header[k] for k in HEADER} == HEADER
    assert header["schema"] == "1"
    assert [a["name"] for a in header["arrays"]] == ["mfcc", "lld", "empty"]
    for name, arr in arrays.items():
        assert back[name].dtype == np.float32
        assert back[name].shape == arr.shape
        assert np.array_equal(back[name], arr, equal_nan=True)
    back["mfcc"][0, 0] = 1.0  # writable copies


def test_layout_is_magic_length_json_then_little_endian_float32():
    data = encode_frame(HEADER, {"x": np.array([1.0, -2.0], np.float64)})
    assert data[:4] == FRAME_MAGIC
    (hlen,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + hlen])
    assert header["arrays"] == [{"name": "x", "shape": [2], "dtype": "<f4"}]
    assert data[8 + hlen :] == struct.pack("<2f", 1.0, -2.0)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"seq": 1, "t_start": 0, "t_end": 1}, "lacks"),
        ({**HEADER, "source": "a b"}, "source id"),
        ({**HEADER, "seq": -1}, "seq"),
        ({**HEADER, "t_end": float("nan")}, "finite"),
        ({**HEADER, "arrays": []}, "reserved"),
        ({**HEADER, "extra": object()}, "JSON"),
    ],
)
def test_encoding_refuses_bad_headers(fields, reason):
    with pytest.raises(FrameError, match=reason):
        encode_frame(fields, {"x": np.zeros(2)})


def test_encoding_refuses_non_numeric_arrays():
    with pytest.raises(FrameError, match="float32"):
        encode_frame(HEADER, {"x": np.array(["a", "b"])})


def _frame_with_header(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return FRAME_MAGIC + struct.pack("<I", len(raw)) + raw + payload


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"SMF", "truncated"),
        (b"XXXX" + struct.pack("<I", 2) + b"{}", "magic"),
        (FRAME_MAGIC + struct.pack("<I", 100) + b"{}", "truncated"),
        (FRAME_MAGIC + struct.pack("<I", 2**31) + b"{}", "exceeds"),
        (FRAME_MAGIC + struct.pack("<I", 3) + b"{x}", "JSON"),
        (FRAME_MAGIC + struct.pack("<I", 2) + b"[]", "object"),
        (_frame_with_header({**HEADER, "schema": "9", "arrays": []}, b""), "schema"),
        (_frame_with_header({**HEADER, "schema": "1"}, b""), "arrays"),
        (_frame_with_header({**HEADER, "schema": "1", "arrays": [
            {"name": "x", "shape": [2], "dtype": "<f8"}]}, bytes(16)), "dtype"),
        (_frame_with_header({**HEADER, "schema": "1", "arrays": [
            {"name": "x", "shape": [-1], "dtype": "<f4"}]}, b""), "shape"),
        (_frame_with_header({**HEADER, "schema": "1", "arrays": [
            {"name": "x", "shape": [2], "dtype": "<f4"}]}, bytes(4)), "truncated"),
        (_frame_with_header({**HEADER, "schema": "1", "arrays": [
            {"name": "x", "shape": [1], "dtype": "<f4"}]}, bytes(8)), "after its last"),
        (_frame_with_header({**HEADER, "schema": "1", "arrays": [
            {"name": "x", "shape": [1], "dtype": "<f4"},
            {"name": "x", "shape": [1], "dtype": "<f4"}]}, bytes(8)), "repeated"),
        ("not bytes", "not bytes"),
    ],
)
def test_malformed_frames_raise_frame_error_with_reason(data, reason):
    with pytest.raises(FrameError, match=reason):
        decode_frame(data)


def test_random_truncations_and_corruptions_never_crash():
    rng = np.random.default_rng(1)
    good = encode_frame(HEADER, _arrays(rng))
    outcomes = {"ok": 0, "error": 0}
    for _ in range(2000):
        data = bytearray(good)
        mode = rng.integers(3)
        if mode == 0:
            data = data[: rng.integers(len(good))]
        elif mode == 1:
            for pos in rng.integers(len(data), size=rng.integers(1, 6)):
                data[pos] = rng.integers(256)
        else:
            data += bytes(rng.integers(256, size=rng.integers(1, 9)).astype(np.uint8))
        try:
            header, arrays = decode_frame(bytes(data))
        except FrameError:
            outcomes["error"] += 1
        else:  # a flip inside the payload or a name is still a well-formed frame
            outcomes["ok"] += 1
            assert all(a.dtype == np.float32 for a in arrays.values())
            assert header["schema"] == "1"
    assert outcomes["error"] > 1000


def _raw_header_frame(raw: bytes) -> bytes:
    return FRAME_MAGIC + struct.pack("<I", len(raw)) + raw


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_raw_header_frame(b"[" * 30_000 + b"]" * 30_000), "nested deeper"),  # RecursionError
        (_raw_header_frame(b'{"a":' * 20 + b"1" + b"}" * 20), "nested deeper"),
        (_frame_with_header({**HEADER, "schema": "1", "t_start": -1.0, "arrays": []}, b""),
         "0 <= t_start <= t_end"),
        (_frame_with_header({**HEADER, "schema": "1", "t_start": 3.0, "t_end": 2.0,
                             "arrays": []}, b""), "0 <= t_start <= t_end"),
        (_frame_with_header({**HEADER, "schema": "1", "seq": 2**60, "arrays": []}, b""),
         r"2\*\*53"),
        (_frame_with_header({**HEADER, "schema": "1", "t_end": 1e400, "arrays": []}, b""),
         "finite"),
        (_frame_with_header({**HEADER, "schema": "1", "session": ["x"], "arrays": []}, b""),
         "session"),
        (_raw_header_frame(b'{"schema": "1", "x": "\\ud800"}'), "lacks field"),
        (_raw_header_frame(b'{"seq": 1' + b"0" * 5000 + b"}"), "JSON"),  # int too long to parse
    ],
)
def test_hostile_headers_are_frame_errors(data, reason):
    """Deep nesting, ranges and parser failures of any kind become FrameError, never another
    exception (a RecursionError used to kill `infer`)."""
    with pytest.raises(FrameError, match=reason) as info:
        decode_frame(data)
    assert "\n" not in str(info.value)


def test_session_passes_through():
    header, _ = decode_frame(encode_frame({**HEADER, "session": "a1b2c3"}, {}))
    assert header["session"] == "a1b2c3"
