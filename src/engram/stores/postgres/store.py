"""PostgresStore: memories, pgvector vectors, a tsvector index, history and messages in PostgreSQL.

Many processes on many machines can share one database: every write is one transaction, identical
concurrent adds are stopped by a partial unique index (``INSERT ... ON CONFLICT DO NOTHING``), and
migrations run under an advisory lock.
"""

from __future__ import annotations

from typing import Any

from engram.errors import EmbedderMismatchError, MissingDependencyError
from engram.interfaces import Store
from engram.stores.postgres.candidates import CandidateSearch
from engram.stores.postgres.derived import DerivedTables
from engram.stores.postgres.rows import PostgresSettings
from engram.stores.postgres.schema import HNSW_INDEX, MIGRATION_LOCK_KEY, hnsw_index_sql, migrate
from engram.stores.postgres.writes import MemoryWrites
from engram.types import EmbedderInfo

_HNSW_MAX_DIM = 2000  # pgvector indexes vectors of up to 2,000 dimensions


class PostgresStore(DerivedTables, MemoryWrites, CandidateSearch, Store):
    """The shared store for many servers and workers: one PostgreSQL database with pgvector."""

    Settings = PostgresSettings

    async def open(self, embedder: EmbedderInfo) -> None:
        try:
            import psycopg
            from pgvector.psycopg import register_vector_async
            from psycopg_pool import AsyncConnectionPool
        except ImportError as e:
            raise MissingDependencyError(e.name or "psycopg", "postgres") from e
        url = self._url()
        async with self._guard():
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await migrate(conn, self._s)
                self._has_hnsw = await self._check_embedder(conn, embedder)

            async def configure(conn: Any) -> None:
                await register_vector_async(conn)

            connection_options: dict[str, Any] = {"autocommit": True}
            if not self.settings.prepared_statements:
                connection_options["prepare_threshold"] = None
            pools = []
            for name, target in (("primary", url), ("replica", self._read_url())):
                if target is None:
                    continue
                pool = AsyncConnectionPool(
                    target,
                    min_size=self.settings.min_pool_size,
                    max_size=self.settings.max_pool_size,
                    timeout=self.settings.pool_timeout,
                    kwargs=connection_options,
                    configure=configure,
                    open=False,
                    name=f"engram-{self._s}-{name}",
                )
                pools.append(pool)
                try:
                    await pool.open(wait=self.settings.min_pool_size > 0, timeout=self.settings.pool_timeout)
                except Exception:
                    for opened in pools:
                        await opened.close()
                    raise
        self._pool_obj = pools[0]
        self._read_pool_obj = pools[1] if len(pools) > 1 else None
        self._note_write(None)  # the migrations may not have reached the replica yet
        self._embedder = embedder
        self._dim = embedder.dim

    async def _check_embedder(self, conn: Any, embedder: EmbedderInfo) -> bool:
        """Record the embedder on first open (typing the vector column); raise on a mismatch."""
        s = self._s
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            cur = await conn.execute(f"SELECT key, value FROM {s}.meta WHERE key IN ('embedder', 'dim')")
            rows = dict(await cur.fetchall())
            if not rows:
                await conn.execute(
                    f"INSERT INTO {s}.meta (key, value) VALUES ('embedder', %s), ('dim', %s)",
                    (embedder.name, str(embedder.dim)),
                )
                await conn.execute(
                    f"ALTER TABLE {s}.memories ALTER COLUMN embedding TYPE vector({int(embedder.dim)})"
                )
                if self.settings.hnsw and embedder.dim <= _HNSW_MAX_DIM:
                    await conn.execute(hnsw_index_sql(s))
            cur = await conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                (s, HNSW_INDEX),
            )
            has_hnsw = await cur.fetchone() is not None
        if rows and (rows["embedder"] != embedder.name or int(rows["dim"]) != embedder.dim):
            raise EmbedderMismatchError(
                f"The PostgreSQL store (schema {s!r}) was filled by embedder {rows['embedder']!r} "
                f"({rows['dim']} dimensions) but {embedder.name!r} ({embedder.dim} dimensions) is "
                "configured. Vectors of different embedders cannot be compared. Either configure the "
                "original embedder again, or point store.config.schema_name (or the URL) at a new "
                "schema, or drop that schema to start over with the new embedder.",
                details={"stored": rows, "configured": {"embedder": embedder.name, "dim": embedder.dim}},
            )
        return has_hnsw

    async def close(self) -> None:
        pools = (self._pool_obj, self._read_pool_obj)
        self._pool_obj = self._read_pool_obj = None
        for pool in pools:
            if pool is not None:
                await pool.close()
        self._stats_cache.clear()
