"""Connections of the PostgreSQL store: the pools, error translation and write transactions.

Writes, migrations and the reads that decide a write go to the primary (``url``). With a
``read_url`` (a streaming replica), searches and listings go to the replica, except that a process
reads a namespace from the primary for ``read_your_writes_seconds`` after it wrote to it, so it
sees its own writes before the replica has replayed them.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from engram.errors import ConfigError, ConflictError, EngramError, StoreError
from engram.stores.postgres.rows import PostgresSettings
from engram.types import EmbedderInfo, Vector

T = TypeVar("T")
_RETRIES = 6


class PostgresConnection:
    """Settings, pool and transaction plumbing shared by the store's parts."""

    def __init__(self, settings: PostgresSettings | None = None, **overrides: Any) -> None:
        base = settings or PostgresSettings()
        self.settings = (
            PostgresSettings.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )
        self._s = self.settings.schema_name
        self._pool_obj: Any = None
        self._read_pool_obj: Any = None  # the replica's pool, when read_url is set
        self._written_at: dict[str | None, float] = {}  # namespace (None: all) -> last write here
        self._dim = 0
        self._embedder = EmbedderInfo("", 0)
        self._has_hnsw = False
        # Large scopes' BM25 statistics: (N, average length, when) and a term's row count, when.
        self._stats_cache: dict[tuple[str, tuple[str | None, ...]], tuple[float, float, float]] = {}
        self._term_cache: dict[tuple[str, tuple[str | None, ...], str], tuple[int, float]] = {}
        # Whether a scope was small (keyword search from its rows), and when that was seen.
        self._scope_sizes: dict[tuple[str, tuple[str | None, ...]], tuple[bool, float]] = {}

    def _url(self) -> str:
        if self.settings.url is not None:
            return self.settings.url.get_secret_value()
        url = os.environ.get("ENGRAM_DATABASE_URL")
        if not url:
            raise ConfigError(
                "The postgres store needs a database URL: set store.config.url or ENGRAM_DATABASE_URL",
                details={"field": "url"},
            )
        return url

    def _read_url(self) -> str | None:
        if self.settings.read_url is not None:
            return self.settings.read_url.get_secret_value()
        return os.environ.get("ENGRAM_DATABASE_READ_URL") or None

    def _pool(self) -> Any:
        if self._pool_obj is None:
            raise StoreError("The store is not open; call open() first (AsyncMemory does this for you)")
        return self._pool_obj

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        async with self._guard(), self._pool().connection() as conn:
            yield conn

    @asynccontextmanager
    async def _read_conn(self, namespace: str) -> AsyncIterator[Any]:
        """A connection for a read of ``namespace`` that decides no write: the replica, if any."""
        pool = self._read_pool_obj
        if pool is None or self._wrote_recently(namespace):
            pool = self._pool()
        async with self._guard(), pool.connection() as conn:
            yield conn

    def _note_write(self, namespace: str | None) -> None:
        now = time.monotonic()
        if len(self._written_at) > 10_000:
            window = self.settings.read_your_writes_seconds
            self._written_at = {k: t for k, t in self._written_at.items() if now - t < window}
        self._written_at[namespace] = now

    def _wrote_recently(self, namespace: str) -> bool:
        window = self.settings.read_your_writes_seconds
        now = time.monotonic()
        return any(now - self._written_at.get(key, -window) < window for key in (namespace, None))

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Turn psycopg errors into Engram errors (``raise ... from e``)."""
        try:
            yield
        except EngramError:
            raise
        except Exception as e:
            import psycopg

            if isinstance(e, psycopg.errors.IntegrityError):
                raise ConflictError(f"The change conflicts with stored data: {e}") from e
            if isinstance(e, psycopg.Error):
                raise StoreError(f"PostgreSQL error ({type(e).__name__}): {e}") from e
            raise

    async def _write(self, namespace: str | None, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in one transaction on the primary, retried on deadlock or serialization
        failure; ``namespace`` (None: every one) is then read from the primary for a while.

        Pipeline mode: statements whose results are not read (history rows, source links) travel
        with the next one that is, instead of costing a round trip each.
        """
        import psycopg

        retryable = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
        for attempt in range(_RETRIES):
            try:
                try:
                    async with self._conn() as conn, conn.pipeline(), conn.transaction():
                        return await fn(conn)
                finally:  # also after a failure: the commit may have happened before the error
                    self._note_write(namespace)
            except StoreError as e:
                if attempt == _RETRIES - 1 or not isinstance(e.__cause__, retryable):
                    raise
            await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    def _check_dim(self, vector: Vector, field: str) -> None:
        if vector.shape != (self._dim,):
            raise StoreError(f"{field} has shape {vector.shape}; this store holds {self._dim}-d vectors")
