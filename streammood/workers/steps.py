"""A bounded hand-over of steps between the feature thread and the inference thread."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class StepQueue(Generic[T]):
    """Bounded FIFO between one producer and one consumer thread.

    Parameters
    ----------
    maxlen : int
        Most items held.
    lossless : bool
        When full, block the producer (a file read as fast as possible must lose nothing);
        otherwise drop the **oldest** item and count it (live audio must never wait).

    Attributes
    ----------
    dropped : int
        Items dropped because the consumer fell behind.
    """

    def __init__(self, maxlen: int = 120, lossless: bool = False) -> None:
        self.maxlen = maxlen
        self.lossless = lossless
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> None:
        with self._cond:
            while self.lossless and len(self._items) >= self.maxlen and not self._closed:
                self._cond.wait()
            if len(self._items) >= self.maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        """No more items: :meth:`get` returns ``None`` once the queue is drained."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """Next item; ``None`` when closed and drained (or on timeout)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def __len__(self) -> int:
        return len(self._items)
