"""Connections to PostgreSQL: the pools and error translation (store and server state alike), and the
store's write transactions and primary / replica routing.

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
from typing import Any, ClassVar, TypeVar

from engram.errors import ConfigError, ConflictError, EngramError, MissingDependencyError, StoreError
from engram.ranking import MIN_SCOPE_FOR_DF
from engram.stores.postgres.rows import PostgresConnectionSettings, PostgresSettings
from engram.types import Scope

T = TypeVar("T")
_RETRIES = 6


class PostgresPool:
    """Settings, the connection pool and error translation, shared by the store and the server state."""

    Settings: ClassVar[type[PostgresConnectionSettings]] = PostgresConnectionSettings
    settings: PostgresConnectionSettings
    _what = "store"  # in messages: what is (not) open, and where its settings are written
    _settings_key = "store.config"

    def __init__(self, settings: PostgresConnectionSettings | None = None, **overrides: Any) -> None:
        base = settings or self.Settings()
        self.settings = (
            self.Settings.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )
        self._s = self.settings.schema_name
        self._pool_obj: Any = None
        self._read_pool_obj: Any = None  # the replica's pool, when read_url is set

    def _url(self) -> str:
        if self.settings.url is not None:
            return self.settings.url.get_secret_value()
        url = os.environ.get("ENGRAM_DATABASE_URL")
        if not url:
            raise ConfigError(
                f"The postgres {self._what} needs a database URL: set {self._settings_key}.url or "
                "ENGRAM_DATABASE_URL",
                details={"field": "url"},
            )
        return url

    def _pool(self) -> Any:
        if self._pool_obj is None:
            raise StoreError(f"The {self._what} is not open; call open() first")
        return self._pool_obj

    async def _open_pools(
        self, name: str, *, vectors: bool = True, read_url: str | None = None, **options: Any
    ) -> tuple[Any, Any]:
        """Open the primary's pool and, with a ``read_url``, the replica's (``options``: connection
        keyword arguments such as ``row_factory``); psycopg's errors propagate (wrap in ``_guard``)."""
        try:
            from pgvector.psycopg import register_vector_async
            from psycopg_pool import AsyncConnectionPool
        except ImportError as e:
            raise MissingDependencyError(e.name or "psycopg", "postgres") from e

        async def configure(conn: Any) -> None:
            await register_vector_async(conn)

        options = {"autocommit": True, **options}
        if not self.settings.prepared_statements:
            options["prepare_threshold"] = None
        pools: list[Any] = []
        for role, target in (("primary", self._url()), ("replica", read_url)):
            if target is None:
                continue
            pool = AsyncConnectionPool(
                target, min_size=self.settings.min_pool_size, max_size=self.settings.max_pool_size,
                timeout=self.settings.pool_timeout, kwargs=options, configure=configure if vectors else None,
                open=False, name=f"{name}-{self._s}-{role}",
            )  # fmt: skip
            pools.append(pool)
            try:
                await pool.open(wait=self.settings.min_pool_size > 0, timeout=self.settings.pool_timeout)
            except Exception:
                for opened in pools:
                    await opened.close()
                raise
        return pools[0], pools[1] if len(pools) > 1 else None

    async def _close_pools(self) -> None:
        pools = (self._pool_obj, self._read_pool_obj)
        self._pool_obj = self._read_pool_obj = None
        for pool in pools:
            if pool is not None:
                await pool.close()

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


class PostgresConnection(PostgresPool):
    """The store's connections: writes to the primary (retried on deadlock), reads maybe to a replica."""

    Settings = PostgresSettings
    settings: PostgresSettings

    def __init__(self, settings: PostgresSettings | None = None, **overrides: Any) -> None:
        super().__init__(settings, **overrides)
        self._written_at: dict[str | None, float] = {}  # namespace (None: all) -> last write here
        self._has_hnsw = False
        # Large scopes' BM25 statistics: (N, average length, when) and a term's row count, when.
        self._stats_cache: dict[tuple[str, tuple[str | None, ...]], tuple[float, float, float]] = {}
        self._term_cache: dict[tuple[str, tuple[str | None, ...], str], tuple[int, float]] = {}
        # Whether a scope was small (keyword search from its rows), and when that was seen.
        self._scope_sizes: dict[tuple[str, tuple[str | None, ...]], tuple[bool, float]] = {}
        # Row sets (a vector search's condition and its params) last counted within the exact bound.
        self._exact_sets: dict[str, float] = {}

    def _note_exact(self, key: str) -> None:
        """Remember that the rows of ``key`` were few enough to be searched exactly."""
        if len(self._exact_sets) > 100_000:
            self._exact_sets.clear()
        self._exact_sets[key] = time.monotonic()

    def _exact_known(self, key: str) -> bool:
        """Whether the rows of ``key`` were counted within the exact bound in the last
        ``stats_cache_seconds``: they are then scored exactly without counting them again (a set
        that grew past the bound meanwhile is still searched exactly, only slower)."""
        seen = self._exact_sets.get(key)
        return seen is not None and time.monotonic() - seen < self.settings.stats_cache_seconds

    def _note_scope_size(self, namespace: str, scope: Scope, rows: float) -> None:
        """Remember whether the scope is small (see :meth:`_small_scope`)."""
        if len(self._scope_sizes) > 100_000:
            self._scope_sizes.clear()
        small = rows < max(self.settings.stats_cache_min_rows, MIN_SCOPE_FOR_DF)
        self._scope_sizes[(namespace, scope.as_tuple())] = (small, time.monotonic())

    def _scope_size_seen(self, namespace: str, scope: Scope) -> bool:
        """Whether the scope's size was seen within ``stats_cache_seconds``."""
        seen = self._scope_sizes.get((namespace, scope.as_tuple()))
        return seen is not None and time.monotonic() - seen[1] < self.settings.stats_cache_seconds

    def _small_scope(self, namespace: str, scope: Scope) -> bool:
        """Whether the scope was smaller than ``stats_cache_min_rows`` when last seen (within
        ``stats_cache_seconds``): its keyword search then runs in one statement from the scope's
        rows. Only the plan depends on this: both plans give the same results."""
        small, _ = self._scope_sizes.get((namespace, scope.as_tuple()), (False, 0.0))
        return small and self._scope_size_seen(namespace, scope)

    def _read_url(self) -> str | None:
        if self.settings.read_url is not None:
            return self.settings.read_url.get_secret_value()
        return os.environ.get("ENGRAM_DATABASE_READ_URL") or None

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
