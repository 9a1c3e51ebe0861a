"""The mood message: one JSON object per source and step, versioned (pure).

The JSON is compact with a fixed key order::

    {"schema":"2","source":"radio1","seq":120,"t_start":60.0,"t_end":60.5,
     "valence":0.31,"arousal":-0.12,"quadrant":"PP",
     "probs":{"AP":0.2,"AN":0.05,"PP":0.6,"PN":0.15},"window_steps":25,
     "segment_start":48.0,"segment_steps":25,"embedding_ready":true,"changed":false,
     "model":{"name":"cnn-lstm","version":"1"},"emitted_at":1718000000.123}

Consumers must ignore fields they do not know (additions keep the schema version); a change
that removes or redefines a field bumps :data:`SCHEMA_VERSION`. Version 2 added the segment
(``segment_start``, ``segment_steps``, ``embedding_ready``: the window restarts where a change
was detected); version-1 messages are still read (segment from the stream start).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from streammood.bus.keys import SourceIdError, validate_source
from streammood.bus.limits import JsonLimitError, loads_bounded
from streammood.errors import StreammoodError

SCHEMA_VERSION = "2"
"""Version of the mood message layout (what is written)."""
READ_SCHEMAS = ("1", "2")
"""Versions :meth:`MoodMessage.from_dict` reads (a version-1 message's segment is the stream
from its start)."""

QUADRANTS: tuple[str, ...] = ("AP", "AN", "PP", "PN")
"""Russell quadrants: AP = +valence +arousal, AN = -valence +arousal, PP = +valence -arousal,
PN = -valence -arousal."""

PROBS_TOLERANCE = 1e-2
"""How far the quadrant probabilities may sum from 1."""
MAX_MESSAGE_BYTES = 1 << 16
"""Largest mood message accepted, bytes of JSON (a real one is ~300)."""


class MessageError(StreammoodError):
    """A mood message that does not follow the schema."""


@dataclass(frozen=True)
class ModelRef:
    """Which model produced a message."""

    name: str
    version: str


@dataclass(frozen=True)
class MoodMessage:
    """The mood of one source at one step.

    Attributes
    ----------
    source : str
        Source id (see :func:`~streammood.bus.keys.validate_source`).
    seq : int
        Step number in the source's stream, from 0.
    t_start, t_end : float
        Stream time of the step, seconds.
    valence, arousal : float
        Position on the circumplex, in [-1, 1].
    quadrant : str
        One of :data:`QUADRANTS`.
    probs : dict[str, float]
        Probability of each quadrant (keys exactly :data:`QUADRANTS`, sum 1).
    window_steps : int
        Steps the prediction is based on (60 once the window is full, fewer at the start of
        the stream or of a segment).
    model : ModelRef
        Model name and version.
    emitted_at : float
        Wall clock when the message was made, seconds since the Unix epoch.
    schema : str
        :data:`SCHEMA_VERSION`.
    captured_at : float or None
        Wall clock (Unix s) at which the step's last sample was captured (optional: absent when
        the producer does not know it); ``emitted_at - captured_at`` is the tagging delay.
    segment_start : float
        Stream time at which the current segment began, s: 0 at the stream start, then where
        the last song (or strong mood) change was detected.
    segment_steps : int
        Steps from ``segment_start`` to this step, this one included (default ``seq + 1``: a
        segment from the stream start).
    embedding_ready : bool
        False while the pretrained embedding of the segment's own audio is not in yet (the
        first 3 s of a stream; after a change, until the segment's own patch, which the
        feature stage takes at the detection step): an early, less certain opinion.
    changed : bool
        This step detected a change: the segment beginning at ``segment_start`` is new (one
        message per change; the event also goes to ``{prefix}:changes:{source}``).
    session : str or None
        Id of the producer session (a ``capture`` or ``listen`` run) whose audio the step comes
        from (optional: absent from producers before sessions). A restarted producer continues
        the source's ``seq`` and stream time under a new session id.
    """

    source: str
    seq: int
    t_start: float
    t_end: float
    valence: float
    arousal: float
    quadrant: str
    probs: dict[str, float]
    window_steps: int
    model: ModelRef
    emitted_at: float
    schema: str = field(default=SCHEMA_VERSION)
    captured_at: float | None = None
    segment_start: float = 0.0
    segment_steps: int | None = None
    embedding_ready: bool = True
    changed: bool = False
    session: str | None = None

    def __post_init__(self) -> None:
        if self.segment_steps is None and isinstance(self.seq, int):
            object.__setattr__(self, "segment_steps", self.seq + 1)
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """The message as plain JSON-able data, keys in contract order."""
        return {
            "schema": self.schema,
            "source": self.source,
            "seq": self.seq,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "valence": self.valence,
            "arousal": self.arousal,
            "quadrant": self.quadrant,
            "probs": {q: self.probs[q] for q in QUADRANTS},
            "window_steps": self.window_steps,
            "segment_start": self.segment_start,
            "segment_steps": self.segment_steps,
            "embedding_ready": self.embedding_ready,
            "changed": self.changed,
            "model": {"name": self.model.name, "version": self.model.version},
            "emitted_at": self.emitted_at,
        } | ({} if self.captured_at is None else {"captured_at": self.captured_at}) | (
            {} if self.session is None else {"session": self.session}
        )

    def to_json(self) -> str:
        """Compact JSON, fixed key order (what goes on the channel and the stream)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> MoodMessage:
        """Build and validate a message from decoded JSON; unknown keys are ignored.

        Raises
        ------
        MessageError
            If a field is missing, has the wrong type or is out of range, or the schema
            version is not one of :data:`READ_SCHEMAS`.
        """
        if not isinstance(data, dict):
            raise MessageError(f"mood message is a {type(data).__name__}, not a JSON object")
        schema = data.get("schema")
        if schema not in READ_SCHEMAS:
            raise MessageError(
                f"mood message schema {schema!r} is not supported (expected {SCHEMA_VERSION!r})"
            )
        missing = [k for k in _FIELDS + (_SEGMENT_FIELDS if schema == "2" else ()) if k not in data]
        if missing:
            raise MessageError(f"mood message lacks field(s) {', '.join(missing)}")
        model = data["model"]
        if not isinstance(model, dict) or not {"name", "version"} <= model.keys():
            raise MessageError("mood message field 'model' must be {name, version}")
        probs = data["probs"]
        if not isinstance(probs, dict):
            raise MessageError("mood message field 'probs' must be an object")
        try:
            return cls(
                source=data["source"],
                seq=data["seq"],
                t_start=_num(data["t_start"], "t_start"),
                t_end=_num(data["t_end"], "t_end"),
                valence=_num(data["valence"], "valence"),
                arousal=_num(data["arousal"], "arousal"),
                quadrant=data["quadrant"],
                probs={str(k): _num(v, f"probs.{k}") for k, v in probs.items()},
                window_steps=data["window_steps"],
                model=ModelRef(name=model["name"], version=model["version"]),
                emitted_at=_num(data["emitted_at"], "emitted_at"),
                schema=schema,
                session=data.get("session"),
                captured_at=None
                if data.get("captured_at") is None
                else _num(data["captured_at"], "captured_at"),
                **(
                    {
                        "segment_start": _num(data["segment_start"], "segment_start"),
                        "segment_steps": data["segment_steps"],
                        "embedding_ready": data["embedding_ready"],
                        "changed": data.get("changed", False),
                    }
                    if schema == "2"
                    else {}
                ),
            )
        except SourceIdError as exc:
            raise MessageError(f"mood message: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes | bytearray) -> MoodMessage:
        """Parse and validate one JSON message (see :meth:`from_dict`): at most
        :data:`MAX_MESSAGE_BYTES` bytes, nested at most
        :data:`~streammood.bus.limits.MAX_JSON_DEPTH` deep.

        Raises
        ------
        MessageError
            Whatever is wrong with ``text`` (never another exception).
        """
        if not isinstance(text, str | bytes | bytearray | memoryview):
            raise MessageError(f"mood message is a {type(text).__name__}, not text")
        try:
            data = loads_bounded(text, max_bytes=MAX_MESSAGE_BYTES)
        except JsonLimitError as exc:
            raise MessageError(f"mood message is {exc}") from None
        try:
            return cls.from_dict(data)
        except MessageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure on foreign data is a bad message
            raise MessageError(
                f"mood message cannot be read ({type(exc).__name__}: {exc})"
            ) from None


_FIELDS = (
    "source",
    "seq",
    "t_start",
    "t_end",
    "valence",
    "arousal",
    "quadrant",
    "probs",
    "window_steps",
    "model",
    "emitted_at",
)
_SEGMENT_FIELDS = ("segment_start", "segment_steps", "embedding_ready")
"""Required from schema version 2 on."""


def _num(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MessageError(f"mood message field {name!r} must be a number, got {value!r}")
    return float(value)


def _validate(msg: MoodMessage) -> None:
    if msg.schema not in READ_SCHEMAS:
        raise MessageError(f"mood message schema {msg.schema!r} is not {SCHEMA_VERSION!r}")
    try:
        validate_source(msg.source)
    except SourceIdError as exc:
        raise MessageError(f"mood message: {exc}") from None
    for name in ("seq", "window_steps"):
        value = getattr(msg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MessageError(
                f"mood message field {name!r} must be an integer >= 0, got {value!r}"
            )
    if msg.window_steps < 1:
        raise MessageError("mood message field 'window_steps' must be >= 1")
    for name in ("t_start", "t_end", "valence", "arousal", "emitted_at"):
        value = getattr(msg, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise MessageError(
                f"mood message field {name!r} must be a finite number, got {value!r}"
            )
    if msg.session is not None and (
        not isinstance(msg.session, str) or not 0 < len(msg.session) <= 64
    ):
        raise MessageError(
            f"mood message field 'session' must be a string of 1-64 characters, got "
            f"{msg.session!r}"
        )
    if msg.captured_at is not None and (
        isinstance(msg.captured_at, bool)
        or not isinstance(msg.captured_at, int | float)
        or not math.isfinite(msg.captured_at)
    ):
        raise MessageError(
            f"mood message field 'captured_at' must be a finite number, got {msg.captured_at!r}"
        )
    _validate_segment(msg)
    if not 0.0 <= msg.t_start <= msg.t_end:
        raise MessageError(
            f"mood message times must satisfy 0 <= t_start <= t_end, got "
            f"{msg.t_start!r}, {msg.t_end!r}"
        )
    for name in ("valence", "arousal"):
        if not -1.0 <= getattr(msg, name) <= 1.0:
            raise MessageError(
                f"mood message field {name!r} must lie in [-1, 1], got {getattr(msg, name)!r}"
            )
    if msg.quadrant not in QUADRANTS:
        raise MessageError(
            f"mood message quadrant {msg.quadrant!r} is not one of {', '.join(QUADRANTS)}"
        )
    if not isinstance(msg.probs, dict) or set(msg.probs) != set(QUADRANTS):
        keys = sorted(msg.probs) if isinstance(msg.probs, dict) else msg.probs
        raise MessageError(f"mood message probs must have keys {', '.join(QUADRANTS)}, got {keys}")
    for q, p in msg.probs.items():
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise MessageError(f"mood message probability {q}={p!r} is not in [0, 1]")
    total = sum(msg.probs.values())
    if abs(total - 1.0) > PROBS_TOLERANCE:
        raise MessageError(f"mood message probabilities sum to {total:.4f}, not 1")
    if not isinstance(msg.model, ModelRef) or not all(
        isinstance(v, str) and v for v in (msg.model.name, msg.model.version)
    ):
        raise MessageError("mood message model must have a non-empty name and version")


def _validate_segment(msg: MoodMessage) -> None:
    """``segment_start`` a finite number in ``[0, t_end]``, ``segment_steps`` an integer >= 1,
    ``embedding_ready`` a bool."""
    start, steps = msg.segment_start, msg.segment_steps
    if isinstance(start, bool) or not isinstance(start, int | float) or not math.isfinite(start):
        raise MessageError(
            f"mood message field 'segment_start' must be a finite number, got {start!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MessageError(
            f"mood message field 'segment_steps' must be an integer >= 1, got {steps!r}"
        )
    if isinstance(msg.t_end, int | float) and not 0.0 <= start <= msg.t_end:
        raise MessageError(
            f"mood message segment_start {start!r} must lie in [0, t_end = {msg.t_end!r}]"
        )
    if not isinstance(msg.changed, bool):
        raise MessageError(
            f"mood message field 'changed' must be true or false, got {msg.changed!r}"
        )
    if not isinstance(msg.embedding_ready, bool):
        raise MessageError(
            "mood message field 'embedding_ready' must be true or false, got "
            f"{msg.embedding_ready!r}"
        )
