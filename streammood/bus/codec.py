"""Binary codec for feature frames between capture and inference workers (pure, no pickle).

Layout of one frame (all integers little-endian)::

    offset  size  content
    0       4     magic b"SMFR"
    4       4     uint32 H, length of the JSON header in bytes
    8       H     UTF-8 JSON header
    8+H     ...   the arrays' raw little-endian float32 data, in header order, C order

The header is an object with at least::

    {"schema": "1", "source": "radio1", "seq": 12, "t_start": 6.0, "t_end": 6.5,
     "arrays": [{"name": "mfcc", "shape": [21, 20], "dtype": "<f4"}, ...]}

plus any extra fields the producer adds (e.g. ``feature_version``), returned unchanged. The
payload size must match the shapes exactly. NaN and infinities are data and pass through.

Ranges are checked: ``seq`` is an integer in ``[0, 2**53]``, ``0 <= t_start <= t_end`` (finite),
the header is at most :data:`MAX_HEADER_BYTES` of JSON nested at most
:data:`~streammood.bus.limits.MAX_JSON_DEPTH` deep, and a producer field ``session``, when
present, is a string of 1-64 characters. Whatever is wrong with a frame, :func:`decode_frame`
raises :class:`FrameError` (never another exception).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from streammood.bus.keys import SourceIdError, validate_source
from streammood.bus.limits import JsonLimitError, loads_bounded
from streammood.errors import StreammoodError

FRAME_MAGIC = b"SMFR"
FRAME_SCHEMA_VERSION = "1"
"""Version of the frame header layout."""
FRAME_DTYPE = "<f4"
MAX_HEADER_BYTES = 1 << 16
"""Largest JSON header accepted, bytes."""
MAX_FRAME_BYTES = 64 << 20
"""Largest frame accepted, bytes."""
MAX_SEQ = 1 << 53
"""Largest step number accepted (exact in a JSON double)."""

_PREFIX = struct.Struct("<4sI")
_RESERVED = ("schema", "arrays")
_REQUIRED = ("source", "seq", "t_start", "t_end")


class FrameError(StreammoodError):
    """A feature frame that cannot be encoded or decoded."""


def encode_frame(header_fields: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Encode one step's feature arrays.

    Parameters
    ----------
    header_fields : dict
        ``source`` (str), ``seq`` (int >= 0), ``t_start``, ``t_end`` (seconds) and any extra
        JSON-able fields; ``schema`` and ``arrays`` are set by the codec.
    arrays : dict[str, np.ndarray]
        Named arrays of any shape, converted to little-endian float32 (C order).

    Returns
    -------
    bytes
        The frame.

    Raises
    ------
    FrameError
        If a required field is missing or invalid, or an array cannot be stored as float32.
    """
    clash = [k for k in _RESERVED if k in header_fields]
    if clash:
        raise FrameError(f"frame header fields {clash} are reserved for the codec")
    header = {"schema": FRAME_SCHEMA_VERSION, **header_fields}
    specs = []
    payloads = []
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise FrameError(f"frame array name {name!r} must be a non-empty string")
        try:
            arr = np.ascontiguousarray(value, dtype=FRAME_DTYPE)
        except (TypeError, ValueError) as exc:
            raise FrameError(f"frame array {name!r} cannot be stored as float32: {exc}") from None
        specs.append({"name": name, "shape": list(arr.shape), "dtype": FRAME_DTYPE})
        payloads.append(arr.tobytes())
    header["arrays"] = specs
    _check_header(header)
    try:
        raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise FrameError(f"frame header is not JSON-able: {exc}") from None
    if len(raw) > MAX_HEADER_BYTES:
        raise FrameError(f"frame header is {len(raw)} bytes, more than {MAX_HEADER_BYTES}")
    return b"".join([_PREFIX.pack(FRAME_MAGIC, len(raw)), raw, *payloads])


def decode_frame(
    data: bytes | bytearray | memoryview,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Decode one frame made by :func:`encode_frame`.

    Returns
    -------
    header : dict
        The JSON header (``schema``, ``source``, ``seq``, ``t_start``, ``t_end``, ``arrays``,
        extra fields).
    arrays : dict[str, np.ndarray]
        Writable float32 arrays with the shapes named in the header.

    Raises
    ------
    FrameError
        On anything malformed: not bytes, bad magic, unsupported schema, truncated or oversized
        data, invalid header, payload size not matching the shapes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FrameError(f"frame is a {type(data).__name__}, not bytes")
    try:
        return _decode(data)
    except FrameError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure on foreign bytes is a bad frame
        raise FrameError(f"frame cannot be decoded ({type(exc).__name__}: {exc})") from None


def _decode(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    buf = memoryview(data).cast("B")
    if len(buf) > MAX_FRAME_BYTES:
        raise FrameError(f"frame is {len(buf)} bytes, more than {MAX_FRAME_BYTES}")
    if len(buf) < _PREFIX.size:
        raise FrameError(f"frame is truncated: {len(buf)} bytes, shorter than its 8-byte prefix")
    magic, hlen = _PREFIX.unpack_from(buf)
    if magic != FRAME_MAGIC:
        raise FrameError(f"frame has bad magic {bytes(magic)!r} (expected {FRAME_MAGIC!r})")
    if hlen > MAX_HEADER_BYTES:
        raise FrameError(f"frame header length {hlen} exceeds {MAX_HEADER_BYTES}")
    end = _PREFIX.size + hlen
    if len(buf) < end:
        raise FrameError(f"frame is truncated: header needs {hlen} bytes, {len(buf) - 8} present")
    try:
        header = loads_bounded(buf[_PREFIX.size : end], max_bytes=MAX_HEADER_BYTES)
    except JsonLimitError as exc:
        raise FrameError(f"frame header is {exc}") from None
    if not isinstance(header, dict):
        raise FrameError("frame header is not a JSON object")
    if header.get("schema") != FRAME_SCHEMA_VERSION:
        raise FrameError(
            f"frame schema {header.get('schema')!r} is not supported "
            f"(expected {FRAME_SCHEMA_VERSION!r})"
        )
    _check_header(header)
    arrays: dict[str, np.ndarray] = {}
    offset = end
    for spec in header["arrays"]:
        count = math.prod(spec["shape"])
        nbytes = 4 * count
        if offset + nbytes > len(buf):
            raise FrameError(
                f"frame is truncated: array {spec['name']!r} needs {nbytes} bytes, "
                f"{len(buf) - offset} left"
            )
        arr = np.frombuffer(buf, dtype=FRAME_DTYPE, count=count, offset=offset)
        arrays[spec["name"]] = arr.reshape(spec["shape"]).astype(np.float32, copy=True)
        offset += nbytes
    if offset != len(buf):
        raise FrameError(f"frame has {len(buf) - offset} bytes after its last array")
    return header, arrays


def _is_finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _check_header(header: dict[str, Any]) -> None:
    missing = [k for k in _REQUIRED if k not in header]
    if missing:
        raise FrameError(f"frame header lacks field(s) {', '.join(missing)}")
    try:
        validate_source(header["source"])
    except SourceIdError as exc:
        raise FrameError(f"frame header: {exc}") from None
    seq = header["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise FrameError(f"frame header seq must be an integer in [0, 2**53], got {seq!r}")
    for name in ("t_start", "t_end"):
        value = header[name]
        if not _is_finite(value):
            raise FrameError(f"frame header {name} must be a finite number, got {value!r}")
    if not 0 <= header["t_start"] <= header["t_end"]:
        raise FrameError(
            f"frame header times must satisfy 0 <= t_start <= t_end, got "
            f"{header['t_start']!r}, {header['t_end']!r}"
        )
    session = header.get("session")
    if session is not None and (not isinstance(session, str) or not 0 < len(session) <= 64):
        raise FrameError("frame header session must be a string of 1-64 characters")
    specs = header.get("arrays")
    if not isinstance(specs, list):
        raise FrameError("frame header 'arrays' must be a list")
    names = set()
    for spec in specs:
        if not isinstance(spec, dict):
            raise FrameError(f"frame array spec {spec!r} is not an object")
        name, shape, dtype = spec.get("name"), spec.get("shape"), spec.get("dtype")
        if not isinstance(name, str) or not name or name in names:
            raise FrameError(f"frame array name {name!r} is empty, not a string or repeated")
        names.add(name)
        if dtype != FRAME_DTYPE:
            raise FrameError(f"frame array {name!r} has dtype {dtype!r}, expected {FRAME_DTYPE!r}")
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < (1 << 31) for n in shape
            )
        ):
            raise FrameError(f"frame array {name!r} has invalid shape {shape!r}")
        if 4 * math.prod(shape) > MAX_FRAME_BYTES:
            raise FrameError(f"frame array {name!r} of shape {shape} is too large")
