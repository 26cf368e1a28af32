"""Writes of the PostgreSQL store: add (duplicates, earlier messages, supersede), update, delete, reset.

Every write is one transaction on the primary (see :meth:`PostgresConnection._write`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from engram.errors import ConflictError, NotFoundError, StoreError
from engram.stores.postgres import search, tokens
from engram.stores.postgres.reads import MemoryReads
from engram.stores.postgres.rows import digest
from engram.types import MemoryRecord, NewMemory, Scope, StoredMessage, Vector, WriteOutcome, utcnow

_INSERT_ATTEMPTS = 6  # at inserting a fact that another transaction deletes meanwhile


class MemoryWrites(MemoryReads):
    """Mixed into :class:`~engram.stores.postgres.PostgresStore`."""

    async def add(
        self, namespace: str, messages: Sequence[StoredMessage], memories: Sequence[NewMemory]
    ) -> list[WriteOutcome]:
        for mem in memories:
            self._check_dim(mem.vector, "memories[].vector")
        return await self._write(
            namespace, lambda conn: self._add_tx(conn, namespace, list(messages), list(memories))
        )

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
        for mem in memories:
            existing = await self._existing_fact(conn, namespace, mem, batch_ids, now)
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

    async def _existing_fact(
        self, conn: Any, namespace: str, mem: NewMemory, batch_ids: list[str], now: datetime
    ) -> str | None:
        """The memory that already holds ``mem``'s fact, in one round trip, or None:

        - the current memory saying the same in exactly this scope (locked); an expired one is
          superseded by ``mem`` instead (the fact is true again), and then there is none;
        - for a raw (``infer=False``) memory: else a current memory extracted from an earlier message
          of exactly this scope with exactly this text (memories whose text was edited since, or that
          expired, no longer speak for that message; a metadata-only update changes nothing).
        """
        s = self._s
        cur = await conn.execute(
            f"WITH twin AS (SELECT id, expires_at FROM {s}.memories WHERE namespace = %s AND scope_key = %s "
            "AND hash = %s AND deleted_at IS NULL AND superseded_by IS NULL FOR UPDATE), "
            # The earlier messages first, whatever the planner's statistics say (fresh tables have
            # none): they are found by an index and are usually none at all.
            f"g AS MATERIALIZED (SELECT id FROM {s}.messages WHERE %s AND namespace = %s AND scope_key = %s "
            "AND content_hash = %s AND content = %s AND NOT (id = ANY(%s::text[]))), "
            f"derived AS (SELECT m.id FROM g JOIN {s}.memory_sources ms ON ms.message_id = g.id "
            f"JOIN {s}.memories m ON m.id = ms.memory_id "
            "WHERE m.deleted_at IS NULL AND m.superseded_by IS NULL "
            "AND (m.expires_at IS NULL OR m.expires_at >= %s) "
            f"AND NOT EXISTS (SELECT 1 FROM {s}.history h WHERE h.memory_id = m.id AND h.event = 'UPDATE' "
            "AND h.old_memory IS DISTINCT FROM h.new_memory) "
            "ORDER BY m.seq LIMIT 1) "
            "SELECT (SELECT id FROM twin), (SELECT expires_at FROM twin), (SELECT id FROM derived)",
            (namespace, mem.scope.key(), mem.hash, mem.raw, namespace, mem.scope.key(), digest(mem.text),
             mem.text, batch_ids, now.date()),
        )  # fmt: skip
        twin, expires_at, derived = await cur.fetchone()
        if twin is not None and (expires_at is None or expires_at >= now.date()):
            return str(twin)
        if twin is not None:
            await self._supersede(conn, namespace, str(twin), mem, now)
        # An expired twin is never ``derived`` (that requires it not expired).
        return str(derived) if derived is not None else None

    async def _insert_memory(self, conn: Any, namespace: str, mem: NewMemory, now: datetime) -> str | None:
        """Insert ``mem``; when its hash is already current in the scope, return that memory's id."""
        s = self._s
        for _ in range(_INSERT_ATTEMPTS):
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

        return await self._write(namespace, tx)

    async def delete(self, namespace: str, memory_id: str) -> None:
        count = await self._write(
            namespace, lambda conn: self._delete_tx(conn, namespace, "m.id = %s", [memory_id])
        )
        if count == 0:
            raise NotFoundError(f"Memory {memory_id!r} not found", details={"memory_id": memory_id})

    async def delete_scope(self, namespace: str, scope: Scope) -> int:
        if scope.is_empty():
            raise StoreError("delete_scope needs a non-empty scope")
        clauses, params = search.scope_where(namespace, scope)
        where = " AND ".join(clauses[2:])  # the scope ids; namespace and deleted_at are added below
        return await self._write(namespace, lambda conn: self._delete_tx(conn, namespace, where, params[1:]))

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

        await self._write(namespace, tx)
        self._stats_cache.clear()
