"""Connections of the PostgreSQL store: the pool, error translation and write transactions."""

from __future__ import annotations

import asyncio
import os
import random
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
        self._dim = 0
        self._embedder = EmbedderInfo("", 0)
        self._has_hnsw = False
        self._stats_cache: dict[tuple[str, tuple[str | None, ...]], tuple[float, float, float]] = {}

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

    def _pool(self) -> Any:
        if self._pool_obj is None:
            raise StoreError("The store is not open; call open() first (AsyncMemory does this for you)")
        return self._pool_obj

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        async with self._guard(), self._pool().connection() as conn:
            yield conn

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

    async def _write(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in one transaction, retried on deadlock or serialization failure.

        Pipeline mode: statements whose results are not read (history rows, source links) travel
        with the next one that is, instead of costing a round trip each.
        """
        import psycopg

        retryable = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
        for attempt in range(_RETRIES):
            try:
                async with self._conn() as conn, conn.pipeline(), conn.transaction():
                    return await fn(conn)
            except StoreError as e:
                if attempt == _RETRIES - 1 or not isinstance(e.__cause__, retryable):
                    raise
            await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    def _check_dim(self, vector: Vector, field: str) -> None:
        if vector.shape != (self._dim,):
            raise StoreError(f"{field} has shape {vector.shape}; this store holds {self._dim}-d vectors")
