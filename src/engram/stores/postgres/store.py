"""PostgresStore: memories, pgvector vectors, a tsvector index, history and messages in PostgreSQL.

Many processes on many machines can share one database: every write is one transaction, identical
concurrent adds are stopped by a partial unique index (``INSERT ... ON CONFLICT DO NOTHING``), and
migrations run under an advisory lock. The rules are in :class:`~engram.stores.sql.store.SQLStore`;
this class opens the pools and runs reads and write transactions on a
:class:`~engram.stores.postgres.session.PostgresSession`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from engram.errors import MissingDependencyError
from engram.interfaces import HybridCandidates, Restored
from engram.stores.postgres import restore, shutdown
from engram.stores.postgres.connection import PostgresConnection
from engram.stores.postgres.rows import PostgresSettings
from engram.stores.postgres.schema import HNSW_INDEX, MIGRATION_LOCK_KEY, hnsw_index_sql, migrate
from engram.stores.postgres.session import PostgresSession
from engram.stores.postgres.timeline import Found
from engram.stores.sql.dialect import Query, Session
from engram.stores.sql.reembed import META_KEYS
from engram.stores.sql.store import SQLStore
from engram.types import EmbedderInfo, RestoredMemory, Vector

T = TypeVar("T")
_HNSW_MAX_DIM = 2000  # pgvector indexes vectors of up to 2,000 dimensions


class PostgresStore(PostgresConnection, SQLStore):
    """The shared store for many servers and workers: one PostgreSQL database with pgvector."""

    Settings = PostgresSettings
    _horizon = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"  # the oldest running transaction
    _remedy = (
        "point store.config.schema_name (or the URL) at a new schema, or drop that schema to start over "
        "with the new embedder"
    )

    async def _read(
        self, namespace: str, fn: Callable[[Session], Awaitable[T]], *, primary: bool = False
    ) -> T:
        return await self._pg_read(namespace, fn, primary=primary)

    async def _pg_read(
        self, namespace: str, fn: Callable[[PostgresSession], Awaitable[T]], *, primary: bool = False
    ) -> T:
        async with self._conn() if primary else self._read_conn(namespace) as conn:
            return await fn(PostgresSession(self, conn))

    async def _transact(self, namespace: str | None, fn: Callable[[Session], Awaitable[T]]) -> T:
        return await self._write(namespace, lambda conn: fn(PostgresSession(self, conn)))

    def restore_many(
        self, namespace: str, batches: AsyncIterable[Sequence[RestoredMemory]]
    ) -> AsyncIterator[list[Restored]]:
        """Imports with binary ``COPY`` (see :mod:`engram.stores.postgres.restore`)."""
        return restore.restore_many(self, namespace, batches)

    async def _prepare(self, embedder: EmbedderInfo) -> dict[str, str]:
        try:
            import psycopg
        except ImportError as e:
            raise MissingDependencyError(e.name or "psycopg", "postgres") from e
        shutdown.install()
        async with self._guard(), await psycopg.AsyncConnection.connect(self._url(), autocommit=True) as conn:
            await migrate(conn, self._s)
            return await self._record_embedder(conn, embedder)

    async def _record_embedder(self, conn: Any, embedder: EmbedderInfo) -> dict[str, str]:
        """Record the embedder on first open (typing the vector column); the stored one otherwise."""
        s = self._s
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            cur = await conn.execute(f"SELECT key, value FROM {s}.meta WHERE key IN {META_KEYS}")
            rows = dict(await cur.fetchall())
            if not rows:
                await conn.execute(
                    f"INSERT INTO {s}.meta (key, value) VALUES ('embedder', %s), ('dim', %s)",
                    (embedder.name, str(embedder.dim)),
                )
                await self.type_vectors(conn, embedder.dim)
            else:
                await self._find_hnsw(conn)
        return rows

    async def type_vectors(self, conn: Any, dim: int | None) -> None:
        """Declare the vector column's size and build the HNSW index (``None``: any size, no index)."""
        s = self._s
        if dim is None:
            await conn.execute(f"DROP INDEX IF EXISTS {s}.{HNSW_INDEX}")
            await conn.execute(f"ALTER TABLE {s}.memories ALTER COLUMN embedding TYPE vector")
        else:
            await conn.execute(f"ALTER TABLE {s}.memories ALTER COLUMN embedding TYPE vector({int(dim)})")
            if self.settings.hnsw and dim <= _HNSW_MAX_DIM:
                await conn.execute(hnsw_index_sql(s))
        await self._find_hnsw(conn)

    async def _find_hnsw(self, conn: Any) -> None:
        cur = await conn.execute(
            "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s", (self._s, HNSW_INDEX)
        )
        self._has_hnsw = await cur.fetchone() is not None

    def _location(self) -> str:
        return f"The PostgreSQL store (schema {self._s!r})"

    async def _start(self) -> None:
        async with self._guard():
            self._pool_obj, self._read_pool_obj = await self._open_pools("engram", read_url=self._read_url())
        self._note_write(None)  # the migrations may not have reached the replica yet

    async def close(self) -> None:
        await self._close_pools()
        self._stats_cache.clear()

    # -- search: fewer statements than the generic path (see docs/deploy.md, "Search profile") -----
    async def _hybrid(self, q: Query, query_vector: Vector | None, terms: list[str]) -> HybridCandidates:
        """Both signals at once on two connections, each statement bringing its rows' cosines and
        timeline (so the search reads no vectors and asks no :meth:`memory_context`)."""
        vector = query_vector
        by_vector, by_keyword = await asyncio.gather(
            self._pg_read(q.namespace, lambda s: s.vector_found(q, vector, context=True))
            if vector is not None
            else _nothing(),
            self._pg_read(q.namespace, lambda s: s.keyword_found(q, terms, vector, context=True))
            if terms
            else _nothing(),
        )
        seen = {c.memory_id for c in by_vector.candidates}
        keyword_only = {c.memory_id for c in by_keyword.candidates} - seen
        cosines = {**by_keyword.cosines, **by_vector.cosines}
        return HybridCandidates(
            by_vector.candidates,
            by_keyword.candidates,
            {mid: cosines[mid] for mid in keyword_only if mid in cosines},
            {**by_keyword.timeline, **by_vector.timeline},
            cosines,
        )


async def _nothing() -> Found:
    return Found()
