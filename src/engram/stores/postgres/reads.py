"""Reads of the PostgreSQL store: records, listings, history, messages, hashes and vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engram.filters import FilterNode
from engram.interfaces import ListPage
from engram.stores.postgres import search
from engram.stores.postgres.connection import PostgresConnection
from engram.stores.postgres.rows import MEMORY_COLUMNS, MESSAGE_COLUMNS, as_array, message, record, utc
from engram.types import HistoryEntry, MemoryRecord, Scope, StoredMessage, Vector, Visibility


class MemoryReads(PostgresConnection):
    """Mixed into :class:`~engram.stores.postgres.PostgresStore`."""

    async def get(self, namespace: str, memory_id: str) -> MemoryRecord | None:
        found = await self.get_many(namespace, [memory_id])
        return found[0] if found else None

    async def get_many(self, namespace: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
        if not memory_ids:
            return []
        async with self._read_conn(namespace) as conn:
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
        async with self._read_conn(namespace) as conn, conn.transaction():
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
        async with self._read_conn(namespace) as conn:
            cur = await conn.execute(
                "SELECT id, memory_id, event, old_memory, new_memory, created_at, actor_id, role, details "
                f"FROM {self._s}.history WHERE namespace = %s AND memory_id = %s ORDER BY seq",
                (namespace, memory_id),
            )
            rows = await cur.fetchall()
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], utc(r[5]), r[6], r[7], dict(r[8])) for r in rows]

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        columns = ", ".join("g." + c.strip() for c in MESSAGE_COLUMNS.split(","))
        async with self._read_conn(namespace) as conn:
            cur = await conn.execute(
                f"SELECT {columns} FROM {self._s}.memory_sources s "
                f"JOIN {self._s}.messages g ON g.id = s.message_id "
                "WHERE s.memory_id = %s AND g.namespace = %s ORDER BY g.seq",
                (memory_id, namespace),
            )
            return [message(r) for r in await cur.fetchall()]

    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        # From the primary (as find_by_hash): add() builds on what it returns.
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
        async with self._read_conn(namespace) as conn:
            cur = await conn.execute(
                f"SELECT id, embedding FROM {self._s}.memories WHERE namespace = %s AND id = ANY(%s::text[])",
                (namespace, list(memory_ids)),
                binary=True,  # pgvector's binary format: a buffer copy instead of parsing text
            )
            return {str(i): as_array(v) for i, v in await cur.fetchall()}
