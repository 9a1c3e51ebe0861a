"""One embedding interpreter shared by many feature stages: patches in from any thread, one
``streammood-musicnn`` thread, batched calls.

A :class:`~streammood.features.extractor.StreamingExtractor` with an embedder of its own builds
a private :class:`EmbeddingService`; many extractors in one process (``listen --sources``) share
one. Patches that are waiting when the thread becomes free go into one ``(k, 187, 96)`` call
(LiteRT gives the same values batched or not); the caller gets a
:class:`~concurrent.futures.Future` per patch and may ask to be told when it is done (without
waiting), so one thread that drives many sources never blocks on the model.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from streammood.features.embedding import MusicnnEmbedder
from streammood.layout import MEL_BANDS, MEL_PATCH_FRAMES

__all__ = ["EmbeddingService", "ServiceStats"]


class ServiceStats:
    """Counters of an :class:`EmbeddingService`.

    Attributes
    ----------
    patches : int
        Patches embedded.
    calls : int
        Interpreter calls (``patches / calls`` is the mean batch).
    largest_batch : int
        Most patches in one call.
    """

    def __init__(self) -> None:
        self.patches = 0
        self.calls = 0
        self.largest_batch = 0


class EmbeddingService:
    """Embed mel patches on one thread, batching the patches that wait.

    Parameters
    ----------
    embedder : MusicnnEmbedder or list of MusicnnEmbedder
        Called from the service's thread only (warmed up here on a zero patch). Several
        interpreters of the same model: one thread each, taking turns at the same queue (the
        second core's share when many sources are due).
    max_batch : int
        Most patches per interpreter call.
    name : str
        Thread name.

    Examples
    --------
    >>> with EmbeddingService(MusicnnEmbedder()) as service:
    ...     emb = service.submit(patch).result()   # (D,) float32
    """

    def __init__(
        self,
        embedder: MusicnnEmbedder | list[MusicnnEmbedder],
        max_batch: int = 16,
        name: str = "streammood-musicnn",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        embedders = embedder if isinstance(embedder, list) else [embedder]
        if not embedders or len({e.dim for e in embedders}) != 1:
            raise ValueError("give one or more embedders of the same model")
        self.embedder = embedders[0]
        self.dim = int(embedders[0].dim)
        self.max_batch = int(max_batch)
        self.stats = ServiceStats()
        for e in embedders:  # set each interpreter up before audio flows (~0.1 s at first)
            e.embed(np.zeros((1, MEL_PATCH_FRAMES, MEL_BANDS), np.float32))
        self._todo: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, args=(e,), name=name, daemon=True) for e in embedders
        ]
        for t in self._threads:
            t.start()

    def submit(
        self,
        patch: np.ndarray,
        on_done: Callable[[Future[np.ndarray]], None] | None = None,
    ) -> Future[np.ndarray]:
        """Queue one ``(187, 96)`` patch; the future's result is its ``(D,)`` float32 embedding.

        ``on_done`` is called with the future on the service's thread once it is done (keep it
        cheap: e.g. wake the thread that will collect it)."""
        fut: Future[np.ndarray] = Future()
        if on_done is not None:
            fut.add_done_callback(on_done)
        with self._cond:
            if self._closed:
                raise RuntimeError("EmbeddingService is closed")
            self._todo.append((np.asarray(patch, np.float32), fut))
            self._cond.notify()
        return fut

    def _run(self, embedder: MusicnnEmbedder) -> None:
        while True:
            with self._cond:
                while not self._todo and not self._closed:
                    self._cond.wait()
                if self._closed and not self._todo:
                    return
                batch = [self._todo.popleft() for _ in range(min(self.max_batch, len(self._todo)))]
            live = [(p, f) for p, f in batch if f.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                out = embedder.embed(np.stack([p for p, _ in live]))
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            with self._cond:
                self.stats.calls += 1
                self.stats.patches += len(live)
                self.stats.largest_batch = max(self.stats.largest_batch, len(live))
            for (_, fut), emb in zip(live, out, strict=True):
                fut.set_result(emb)

    def close(self) -> None:
        """Cancel what waits, finish the call under way, stop the thread (idempotent)."""
        with self._cond:
            self._closed = True
            while self._todo:
                self._todo.popleft()[1].cancel()
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    def __enter__(self) -> EmbeddingService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
