"""The protocol every streaming stage speaks (resampler, framer, feature extractor, mood model).

``push(x)`` takes the next input (an audio block, a step's inputs) and returns what it completed,
oldest first (possibly nothing); ``finish()`` ends the stream and returns the rest; ``close()``
releases what the stage holds (threads, native engines) without collecting, and may be called at
any time and more than once. A stage with stream state also has ``reset()``. Whoever builds a
stage closes it (``with stage:`` does), so a run that stops early (``--duration``, Ctrl-C, an
error) leaves no thread behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)


@runtime_checkable
class Stage(Protocol[In, Out]):
    """A streaming stage: ``push`` → outputs, ``finish`` → the rest, ``close``."""

    def push(self, x: In, /) -> Sequence[Out]: ...

    def finish(self) -> Sequence[Out]: ...

    def close(self) -> None: ...
