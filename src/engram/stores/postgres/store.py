"""PostgresStore: memories, pgvector vectors, a tsvector index, history and messages in PostgreSQL.

Many processes on many machines can share one database: every write is one transaction, identical
concurrent adds are stopped by a partial unique index (``INSERT ... ON CONFLICT DO NOTHING``), and
migrations run under an advisory lock.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any, TypeVar

import numpy as np

from engram.errors import (
    ConfigError,
    ConflictError,
    EmbedderMismatchError,
    EngramError,
    MissingDependencyError,
    NotFoundError,
    StoreError,
)
from engram.filters import FilterNode
from engram.interfaces import ListPage, Store
from engram.keywords import query_terms
from engram.stores.postgres import search, tokens
from engram.stores.postgres.rows import (
    MEMORY_COLUMNS,
    MESSAGE_COLUMNS,
    PostgresSettings,
    as_array,
    digest,
    message,
    record,
    utc,
)
from engram.stores.postgres.schema import MIGRATION_LOCK_KEY, migrate
from engram.types import (
    Candidate,
    EmbedderInfo,
    HistoryEntry,
    MemoryContext,
    MemoryRecord,
    NewMemory,
    Scope,
    StoredMessage,
    Vector,
    Visibility,
    WriteOutcome,
    utcnow,
)

T = TypeVar("T")
_HNSW_MAX_DIM = 2000  # pgvector indexes vectors of up to 2,000 dimensions
_RETRIES = 6


class PostgresStore(Store):
    """The shared store for many servers and workers: one PostgreSQL database with pgvector."""

    Settings = PostgresSettings

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

    # -- plumbing --------------------------------------------------------------------------------
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

    # -- lifecycle -------------------------------------------------------------------------------
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

            pool = AsyncConnectionPool(
                url,
                min_size=self.settings.min_pool_size,
                max_size=self.settings.max_pool_size,
                timeout=self.settings.pool_timeout,
                kwargs={"autocommit": True},
                configure=configure,
                open=False,
                name=f"engram-{self._s}",
            )
            await pool.open(wait=self.settings.min_pool_size > 0, timeout=self.settings.pool_timeout)
        self._pool_obj = pool
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
                    await conn.execute(
                        f"CREATE INDEX IF NOT EXISTS memories_embedding_hnsw ON {s}.memories "
                        "USING hnsw (embedding vector_ip_ops)"
                    )
            cur = await conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = 'memories_embedding_hnsw'",
                (s,),
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
        pool, self._pool_obj = self._pool_obj, None
        if pool is not None:
            await pool.close()
        self._stats_cache.clear()

    # -- writes ----------------------------------------------------------------------------------
    async def add(
        self, namespace: str, messages: Sequence[StoredMessage], memories: Sequence[NewMemory]
    ) -> list[WriteOutcome]:
        for mem in memories:
            self._check_dim(mem.vector, "memories[].vector")
        return await self._write(lambda conn: self._add_tx(conn, namespace, list(messages), list(memories)))

    async def _add_tx(
        self, conn: Any, namespace: str, messages: list[StoredMessage], memories: list[NewMemory]
    ) -> list[WriteOutcome]:
        s = self._s
        if messages:
            async with conn.cursor() as cur:
                await cur.executemany(
                    f"INSERT INTO {s}.messages (id, namespace, user_id, agent_id, app_id, run_id, "
                    "scope_key, role, name, content, content_hash, observed_at, created_at) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    [
                        (m.id, namespace, *m.scope.as_tuple(), m.scope.key(), m.role, m.name, m.content,
                         digest(m.content), m.observed_at, m.created_at)
                        for m in messages
                    ],
                )  # fmt: skip
        now = utcnow()
        outcomes: list[WriteOutcome] = []
        batch_ids = [m.id for m in messages]
        today = now.date()
        for mem in memories:
            existing = await self._current_twin(conn, namespace, mem, now)
            if existing is None and mem.raw:
                existing = await self._derived_from_earlier_message(conn, namespace, mem, batch_ids, today)
            if existing is None:
                existing = await self._insert_memory(conn, namespace, mem, now)
            if existing is not None:
                await self._link_sources(conn, existing, mem.source_message_ids)
                outcomes.append(WriteOutcome(existing, mem.text, "NONE", existing_id=existing))
                continue
            await self._link_sources(conn, mem.id, mem.source_message_ids)
            await self._history(conn, namespace, mem.id, "ADD", None, mem.text, now, mem.actor_id, mem.role)
            for old_id in mem.supersedes:
                await self._supersede(conn, namespace, old_id, mem, now)
            outcomes.append(WriteOutcome(mem.id, mem.text, "ADD"))
        return outcomes

    async def _current_twin(self, conn: Any, namespace: str, mem: NewMemory, now: datetime) -> str | None:
        """The current memory saying the same in exactly this scope; an expired one is superseded
        by ``mem`` instead (the fact is true again), and then there is none."""
        cur = await conn.execute(
            f"SELECT id, expires_at FROM {self._s}.memories WHERE namespace = %s AND scope_key = %s "
            "AND hash = %s AND deleted_at IS NULL AND superseded_by IS NULL FOR UPDATE",
            (namespace, mem.scope.key(), mem.hash),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        if row[1] is not None and row[1] < now.date():
            await self._supersede(conn, namespace, str(row[0]), mem, now)
            return None
        return str(row[0])

    async def _derived_from_earlier_message(
        self, conn: Any, namespace: str, mem: NewMemory, batch_ids: list[str], today: date
    ) -> str | None:
        """For a raw (``infer=False``) memory: a current memory extracted from an earlier message of
        exactly this scope with exactly this text, if any (memories whose text was edited since, or
        that expired, no longer speak for that message; a metadata-only update changes nothing)."""
        s = self._s
        cur = await conn.execute(
            f"SELECT m.id FROM {s}.messages g JOIN {s}.memory_sources ms ON ms.message_id = g.id "
            f"JOIN {s}.memories m ON m.id = ms.memory_id "
            "WHERE g.namespace = %s AND g.scope_key = %s AND g.content_hash = %s AND g.content = %s "
            "AND NOT (g.id = ANY(%s::text[])) AND m.deleted_at IS NULL AND m.superseded_by IS NULL "
            "AND (m.expires_at IS NULL OR m.expires_at >= %s) "
            f"AND NOT EXISTS (SELECT 1 FROM {s}.history h WHERE h.memory_id = m.id AND h.event = 'UPDATE' "
            "AND h.old_memory IS DISTINCT FROM h.new_memory) "
            "ORDER BY m.seq LIMIT 1",
            (namespace, mem.scope.key(), digest(mem.text), mem.text, batch_ids, today),
        )
        row = await cur.fetchone()
        return str(row[0]) if row else None

    async def _insert_memory(self, conn: Any, namespace: str, mem: NewMemory, now: datetime) -> str | None:
        """Insert ``mem``; when its hash is already current in the scope, return that memory's id."""
        s = self._s
        for _ in range(_RETRIES):
            cur = await conn.execute(
                f"INSERT INTO {s}.memories (id, namespace, user_id, agent_id, app_id, run_id, scope_key, "
                "text, hash, actor_id, role, metadata, metadata_text, created_at, observed_at, expires_at, "
                "embedding, tsv, doc_len) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb,%s,%s,%s,%s,%s,%s::tsvector,%s) "
                "ON CONFLICT (namespace, scope_key, hash) WHERE deleted_at IS NULL AND superseded_by IS NULL "
                "DO NOTHING RETURNING id",
                (
                    mem.id,
                    namespace,
                    *mem.scope.as_tuple(),
                    mem.scope.key(),
                    mem.text,
                    mem.hash,
                    mem.actor_id,
                    mem.role,
                    json.dumps(mem.metadata),
                    json.dumps(mem.metadata),
                    now,
                    mem.observed_at,
                    mem.expires_at,
                    np.asarray(mem.vector, dtype=np.float32),
                    *tokens.document(mem.text, len(mem.scope.given())),
                ),
            )
            if await cur.fetchone() is not None:
                return None
            # Another transaction holds this fact (it committed before our insert could proceed).
            cur = await conn.execute(
                f"SELECT id FROM {s}.memories WHERE namespace = %s AND scope_key = %s AND hash = %s "
                "AND deleted_at IS NULL AND superseded_by IS NULL",
                (namespace, mem.scope.key(), mem.hash),
            )
            row = await cur.fetchone()
            if row is not None:
                return str(row[0])
            # ...and it was deleted or superseded in between: try the insert again.
        raise StoreError(f"memories[].hash {mem.hash!r}: could not insert or find the current memory")

    def _check_dim(self, vector: Vector, field: str) -> None:
        if vector.shape != (self._dim,):
            raise StoreError(f"{field} has shape {vector.shape}; this store holds {self._dim}-d vectors")

    async def _supersede(self, conn: Any, namespace: str, old_id: str, new: NewMemory, now: datetime) -> None:
        s = self._s
        cur = await conn.execute(
            f"UPDATE {s}.memories SET superseded_by = %s, valid_until = %s WHERE id = %s AND namespace = %s "
            "AND deleted_at IS NULL AND superseded_by IS NULL RETURNING text",
            (new.id, now, old_id, namespace),
        )
        row = await cur.fetchone()
        if row is not None:
            await self._history(
                conn, namespace, old_id, "SUPERSEDE", row[0], new.text, now, new.actor_id, new.role,
                {"superseded_by": new.id},
            )  # fmt: skip

    async def _link_sources(self, conn: Any, memory_id: str, message_ids: Sequence[str]) -> None:
        if message_ids:
            await conn.execute(
                f"INSERT INTO {self._s}.memory_sources (memory_id, message_id) "
                "SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                (memory_id, list(message_ids)),
            )

    async def _history(
        self,
        conn: Any,
        namespace: str,
        memory_id: str,
        event: str,
        old: str | None,
        new: str | None,
        at: datetime,
        actor_id: str | None = None,
        role: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await conn.execute(
            f"INSERT INTO {self._s}.history (id, namespace, memory_id, event, old_memory, new_memory, "
            "created_at, actor_id, role, details) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb)",
            (str(uuid.uuid4()), namespace, memory_id, event, old, new, at, actor_id, role,
             json.dumps(details or {})),
        )  # fmt: skip

    async def update(
        self,
        namespace: str,
        memory_id: str,
        *,
        text: str | None = None,
        text_hash: str | None = None,
        vector: Vector | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MemoryRecord:
        if text is not None:
            if text_hash is None or vector is None:
                raise StoreError("update with text needs its hash and vector")
            self._check_dim(vector, "vector")

        async def tx(conn: Any) -> MemoryRecord:
            s = self._s
            cur = await conn.execute(
                f"SELECT text, scope_key, actor_id, role, num_nonnulls(user_id, agent_id, app_id, run_id) "
                f"FROM {s}.memories "
                "WHERE id = %s AND namespace = %s AND deleted_at IS NULL FOR UPDATE",
                (memory_id, namespace),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFoundError(f"Memory {memory_id!r} not found", details={"memory_id": memory_id})
            old_text, scope_key, actor_id, role, scope_ids = row
            now = utcnow()
            if text is not None:
                cur = await conn.execute(
                    f"SELECT id FROM {s}.memories WHERE namespace = %s AND scope_key = %s AND hash = %s "
                    "AND id <> %s AND deleted_at IS NULL AND superseded_by IS NULL",
                    (namespace, scope_key, text_hash, memory_id),
                )
                clash = await cur.fetchone()
                if clash is not None:
                    raise ConflictError(
                        f"Memory {clash[0]!r} in the same scope already says this",
                        details={"existing_id": clash[0]},
                    )
                tsv, doc_len = tokens.document(text, scope_ids)
                await conn.execute(
                    f"UPDATE {s}.memories SET text = %s, hash = %s, embedding = %s, updated_at = %s, "
                    "tsv = %s::tsvector, doc_len = %s WHERE id = %s",
                    (text, text_hash, np.asarray(vector, dtype=np.float32), now, tsv, doc_len, memory_id),
                )
            if metadata is not None:
                await conn.execute(
                    f"UPDATE {s}.memories SET metadata = %s::jsonb, metadata_text = %s, updated_at = %s "
                    "WHERE id = %s",
                    (json.dumps(metadata), json.dumps(metadata), now, memory_id),
                )
            details = {"metadata": metadata} if metadata is not None else {}
            new_text = text if text is not None else old_text
            await self._history(
                conn, namespace, memory_id, "UPDATE", old_text, new_text, now, actor_id, role, details
            )
            return (await self._records(conn, namespace, [memory_id]))[0]

        return await self._write(tx)

    async def delete(self, namespace: str, memory_id: str) -> None:
        count = await self._write(lambda conn: self._delete_tx(conn, namespace, "m.id = %s", [memory_id]))
        if count == 0:
            raise NotFoundError(f"Memory {memory_id!r} not found", details={"memory_id": memory_id})

    async def delete_scope(self, namespace: str, scope: Scope) -> int:
        if scope.is_empty():
            raise StoreError("delete_scope needs a non-empty scope")
        clauses, params = search.scope_where(namespace, scope)
        where = " AND ".join(clauses[2:])  # the scope ids; namespace and deleted_at are added below
        return await self._write(lambda conn: self._delete_tx(conn, namespace, where, params[1:]))

    async def _delete_tx(self, conn: Any, namespace: str, where: str, params: list[Any]) -> int:
        now = utcnow()
        cur = await conn.execute(
            f"UPDATE {self._s}.memories m SET deleted_at = %s "
            f"WHERE m.namespace = %s AND m.deleted_at IS NULL AND {where} "
            "RETURNING m.id, m.text, m.actor_id, m.role",
            [now, namespace, *params],
        )
        rows = await cur.fetchall()
        for memory_id, text, actor_id, role in rows:
            await self._history(conn, namespace, memory_id, "DELETE", text, None, now, actor_id, role)
        if rows:
            self._stats_cache.clear()
        return len(rows)

    async def reset(self, namespace: str | None = None) -> None:
        s = self._s

        async def tx(conn: Any) -> None:
            if namespace is None:
                await conn.execute(f"TRUNCATE {s}.memories, {s}.messages, {s}.memory_sources, {s}.history")
                return
            await conn.execute(
                f"DELETE FROM {s}.memory_sources WHERE memory_id IN "
                f"(SELECT id FROM {s}.memories WHERE namespace = %s)",
                (namespace,),
            )
            for table in ("memories", "messages", "history"):
                await conn.execute(f"DELETE FROM {s}.{table} WHERE namespace = %s", (namespace,))

        await self._write(tx)
        self._stats_cache.clear()

    # -- reads -----------------------------------------------------------------------------------
    async def get(self, namespace: str, memory_id: str) -> MemoryRecord | None:
        found = await self.get_many(namespace, [memory_id])
        return found[0] if found else None

    async def get_many(self, namespace: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
        if not memory_ids:
            return []
        async with self._conn() as conn:
            return await self._records(conn, namespace, list(memory_ids))

    async def _records(self, conn: Any, namespace: str, memory_ids: list[str]) -> list[MemoryRecord]:
        cur = await conn.execute(
            f"SELECT {MEMORY_COLUMNS} FROM {self._s}.memories m "
            "WHERE m.namespace = %s AND m.deleted_at IS NULL AND m.id = ANY(%s::text[])",
            (namespace, memory_ids),
        )
        by_id = {row[0]: record(row) for row in await cur.fetchall()}
        await self._attach_sources(conn, list(by_id.values()))
        return [by_id[i] for i in memory_ids if i in by_id]

    async def _attach_sources(self, conn: Any, records: list[MemoryRecord]) -> None:
        if not records:
            return
        index = {r.id: r for r in records}
        cur = await conn.execute(
            f"SELECT s.memory_id, s.message_id FROM {self._s}.memory_sources s "
            f"JOIN {self._s}.messages g ON g.id = s.message_id "
            "WHERE s.memory_id = ANY(%s::text[]) ORDER BY g.seq",
            (list(index),),
        )
        for memory_id, message_id in await cur.fetchall():
            index[memory_id].source_message_ids.append(message_id)

    async def list_memories(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        *,
        limit: int,
        offset: int = 0,
    ) -> ListPage:
        where, params = search.full_where(namespace, scope, filters, visibility, self._s)
        s = self._s
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur = await conn.execute(f"SELECT count(*) FROM {s}.memories m WHERE {where}", params)
            total = int((await cur.fetchone())[0])
            cur = await conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM {s}.memories m WHERE {where} "
                "ORDER BY m.observed_at DESC, m.seq DESC LIMIT %s OFFSET %s",
                [*params, limit, offset],
            )
            records = [record(r) for r in await cur.fetchall()]
            await self._attach_sources(conn, records)
        return ListPage(records, total)

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, memory_id, event, old_memory, new_memory, created_at, actor_id, role, details "
                f"FROM {self._s}.history WHERE namespace = %s AND memory_id = %s ORDER BY seq",
                (namespace, memory_id),
            )
            rows = await cur.fetchall()
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], utc(r[5]), r[6], r[7], dict(r[8])) for r in rows]

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        columns = ", ".join("g." + c.strip() for c in MESSAGE_COLUMNS.split(","))
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT {columns} FROM {self._s}.memory_sources s "
                f"JOIN {self._s}.messages g ON g.id = s.message_id "
                "WHERE s.memory_id = %s AND g.namespace = %s ORDER BY g.seq",
                (memory_id, namespace),
            )
            return [message(r) for r in await cur.fetchall()]

    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        if limit <= 0:
            return []
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM {self._s}.messages WHERE namespace = %s AND scope_key = %s "
                "ORDER BY seq DESC LIMIT %s",
                (namespace, scope.key(), limit),
            )
            rows = await cur.fetchall()
        return [message(r) for r in reversed(rows)]

    async def find_by_hash(self, namespace: str, scope: Scope, hashes: Sequence[str]) -> dict[str, str]:
        if not hashes:
            return {}
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT hash, id FROM {self._s}.memories WHERE namespace = %s AND scope_key = %s "
                "AND hash = ANY(%s::text[]) AND deleted_at IS NULL AND superseded_by IS NULL",
                (namespace, scope.key(), list(hashes)),
            )
            return {str(h): str(i) for h, i in await cur.fetchall()}

    async def vectors_for(self, namespace: str, memory_ids: Sequence[str]) -> dict[str, Vector]:
        if not memory_ids:
            return {}
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT id, embedding FROM {self._s}.memories WHERE namespace = %s AND id = ANY(%s::text[])",
                (namespace, list(memory_ids)),
                binary=True,  # pgvector's binary format: a buffer copy instead of parsing text
            )
            return {str(i): as_array(v) for i, v in await cur.fetchall()}

    # -- candidates ------------------------------------------------------------------------------
    async def vector_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_vector: Vector,
        limit: int,
    ) -> list[Candidate]:
        self._check_dim(query_vector, "query_vector")
        if limit <= 0:
            return []
        where, params = search.full_where(namespace, scope, filters, visibility, self._s)
        q = np.asarray(query_vector, dtype=np.float32)
        s = self._s
        bound = self.settings.exact_search_max_rows
        async with self._conn() as conn:
            if not self._has_hnsw:
                cur = await conn.execute(search.exact_vector_sql(s, where, False), [q, *params, limit])
                return [Candidate(str(r[0]), float(r[1])) for r in await cur.fetchall()]
            # One statement for the common case: the scope is small enough to score every row.
            exact = search.exact_vector_sql(s, where, True)
            cur = await conn.execute(exact, [*params, bound + 1, q, *params, bound, limit])
            rows = await cur.fetchall()
            if not rows:  # an empty scope, or one too large to scan: ask the index
                cur = await conn.execute(search.count_upto_sql(s, where), [*params, bound + 1])
                if int((await cur.fetchone())[0]) > bound:
                    rows = await self._hnsw_candidates(conn, where, params, q, limit)
        return [Candidate(str(r[0]), float(r[1])) for r in rows]

    async def _hnsw_candidates(
        self, conn: Any, where: str, params: list[Any], q: Vector, limit: int
    ) -> list[Any]:
        ef = max(self.settings.hnsw_ef_search, min(limit, 1000))
        async with conn.transaction():
            await conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
            await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            cur = await conn.execute(search.hnsw_vector_sql(self._s, where), [q, *params, q, limit])
            return list(await cur.fetchall())

    async def keyword_candidates(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        query_text: str,
        limit: int,
    ) -> list[Candidate]:
        lexemes = tokens.query_lexemes(query_terms(query_text))
        if not lexemes or limit <= 0:
            return []
        async with self._conn() as conn:
            # No shared snapshot needed: BM25 clamps N to each term's document frequency.
            n_docs, avgdl, lexemes = await self._stats_and_terms(conn, namespace, scope, lexemes)
            if n_docs == 0:
                return []
            sql, params = search.bm25_sql(
                self._s, namespace, scope, filters, visibility, lexemes, n_docs, avgdl, limit
            )
            cur = await conn.execute(sql, params)
            rows = await cur.fetchall()
        return [Candidate(str(r[0]), float(r[1])) for r in rows]

    async def _stats_and_terms(
        self, conn: Any, namespace: str, scope: Scope, lexemes: list[str]
    ) -> tuple[float, float, list[str]]:
        """The scope's (N, average length) and the query terms to keep: those in at most
        MAX_TERM_SHARE of the scope (all of them if none is), in one round trip."""
        key = (namespace, scope.as_tuple())
        cached = self._stats_cache.get(key)
        if cached is not None and time.monotonic() - cached[2] < self.settings.stats_cache_seconds:
            stats: tuple[float, float] | None = (cached[0], cached[1])
        else:
            stats = None
        counted = lexemes if len(lexemes) >= 2 else []
        sql, params = search.stats_and_term_counts_sql(self._s, namespace, scope, stats)
        literals = [tokens.tsquery_literal([lexeme]) for lexeme in counted]
        cur = await conn.execute(sql, [*params, literals])
        n_docs, avgdl, counts = await cur.fetchone()
        n_docs, avgdl = float(n_docs), float(avgdl)
        if stats is None and n_docs >= max(self.settings.stats_cache_min_rows, 1):
            if len(self._stats_cache) > 10_000:
                self._stats_cache.clear()
            self._stats_cache[key] = (n_docs, avgdl, time.monotonic())
        if not counted or n_docs < search.MIN_SCOPE_FOR_DF:
            return n_docs, avgdl, lexemes
        cap = int(n_docs * search.MAX_TERM_SHARE)
        kept = [lexeme for lexeme, count in zip(counted, counts, strict=True) if count <= cap]
        return n_docs, avgdl, kept or lexemes

    async def memory_context(
        self, namespace: str, scope: Scope, memory_ids: Sequence[str], session_gap_s: float
    ) -> dict[str, MemoryContext]:
        if not memory_ids:
            return {}
        sql, params = search.context_sql(self._s, namespace, scope)
        async with self._conn() as conn:
            cur = await conn.execute(sql, [*params, list(memory_ids)])
            rows = await cur.fetchall()
        out: dict[str, MemoryContext] = {}
        for mid, ts, prev_id, prev_ts, next_id, next_ts in rows:
            out[str(mid)] = MemoryContext(
                float(ts),
                str(prev_id) if prev_id is not None and abs(ts - prev_ts) <= session_gap_s else None,
                str(next_id) if next_id is not None and abs(next_ts - ts) <= session_gap_s else None,
            )
        return out
