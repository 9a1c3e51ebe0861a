"""Bounds on what the bus accepts from Redis (pure): JSON size and nesting depth.

Anything read from Redis may have been written by a foreign or broken producer. The frame
codec and the mood message parse their JSON through :func:`loads_bounded`, so that a huge or
deeply nested document becomes the caller's own error (``FrameError``, ``MessageError``),
never a ``RecursionError`` or a memory spike.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 16
"""Deepest nesting of objects and arrays accepted in a frame header or mood message."""


class JsonLimitError(ValueError):
    """A JSON document that is invalid, too large or nested too deeply (the message says which)."""


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of decoded JSON (a scalar is 0, ``[]`` is 1), counted without recursion;
    stops counting once ``limit`` is exceeded (returns ``limit + 1``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            return limit + 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def loads_bounded(
    raw: str | bytes | bytearray | memoryview, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """``json.loads`` with limits: at most ``max_bytes`` bytes (UTF-8) and ``max_depth`` levels.

    Raises
    ------
    JsonLimitError
        Too large, too deep, not UTF-8, not JSON, or any other failure of the parser (one line,
        naming the reason).
    """
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > max_bytes:
        raise JsonLimitError(f"{size} bytes of JSON, more than {max_bytes}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        value = json.loads(text)
    except RecursionError:
        raise JsonLimitError(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise JsonLimitError(f"not valid JSON (not UTF-8: {exc})") from None
    except ValueError as exc:
        raise JsonLimitError(f"not valid JSON: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the parser raises is the input's fault
        raise JsonLimitError(f"not valid JSON ({type(exc).__name__}: {exc})") from None
    if json_depth(value, max_depth) > max_depth:
        raise JsonLimitError(f"JSON nested deeper than {max_depth} levels")
    return value
