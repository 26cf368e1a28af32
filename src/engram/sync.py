"""Memory: the synchronous facade. Each method runs the matching AsyncMemory coroutine; no logic here."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from engram.config import MemoryConfig
from engram.interfaces import LLM, Embedder, Extractor, Reranker, Store
from engram.memory import AsyncMemory

P = ParamSpec("P")
R = TypeVar("R")


class LoopThread:
    """A private event loop on a daemon thread; blocking calls submit coroutines to it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="engram-loop", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        loop = self.loop()
        if _running_loop() is loop:
            coro.close()
            raise RuntimeError("Memory's blocking methods cannot be called from its own event loop")
        future: Future[R] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result()

    def stop(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None

    def shutdown(self, engine: AsyncMemory) -> None:
        """Close ``engine`` on the loop (if one was started), then stop the loop. Safe to repeat."""
        with self._lock:
            loop = self._loop
        if loop is not None and loop.is_running() and _running_loop() is not loop:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(engine.close(), loop).result(timeout=30)
        self.stop()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Any, P], R]:
    """A blocking twin of an async method: runs it on ``self._engine`` in ``self._runner``'s loop."""

    @functools.wraps(method)
    def call(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, self._runner.run(method(self._engine, *args, **kwargs)))

    return call  # type: ignore[return-value]


class Memory:
    """Synchronous long-term memory with mem0's API. ``Memory()`` works offline, with no setup.

    Every method has the same arguments and results as its :class:`AsyncMemory` twin.
    """

    def __init__(
        self,
        config: MemoryConfig | dict[str, Any] | None = None,
        *,
        store: Store | None = None,
        embedder: Embedder | None = None,
        llm: LLM | None = None,
        reranker: Reranker | None = None,
        extractor: Extractor | None = None,
    ) -> None:
        self._engine = AsyncMemory(
            config, store=store, embedder=embedder, llm=llm, reranker=reranker, extractor=extractor
        )
        self._runner = LoopThread()
        # Also at interpreter exit: pools and threads are released even without close().
        self._finalizer = weakref.finalize(self, self._runner.shutdown, self._engine)

    @classmethod
    def from_config(cls, config: dict[str, Any] | MemoryConfig) -> Memory:
        """Build from a config dict (mem0's shape is accepted)."""
        return cls(config)

    @property
    def engine(self) -> AsyncMemory:
        """The AsyncMemory underneath."""
        return self._engine

    add = blocking(AsyncMemory.add)
    add_many = blocking(AsyncMemory.add_many)
    search = blocking(AsyncMemory.search)
    get = blocking(AsyncMemory.get)
    get_all = blocking(AsyncMemory.get_all)
    update = blocking(AsyncMemory.update)
    delete = blocking(AsyncMemory.delete)
    delete_all = blocking(AsyncMemory.delete_all)
    history = blocking(AsyncMemory.history)
    sources = blocking(AsyncMemory.sources)
    entities = blocking(AsyncMemory.entities)
    profile = blocking(AsyncMemory.profile)
    refresh_profile = blocking(AsyncMemory.refresh_profile)
    summary = blocking(AsyncMemory.summary)
    stats = blocking(AsyncMemory.stats)
    reset = blocking(AsyncMemory.reset)
    reembed = blocking(AsyncMemory.reembed)

    def close(self) -> None:
        """Close the store and stop the background loop (again: nothing happens)."""
        if self._finalizer.detach() is None:
            return
        try:
            self._runner.run(self._engine.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
