"""SQL of the PostgreSQL store's reads: records, listings, history, messages, hashes and vectors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engram.interfaces import ListPage
from engram.stores.postgres.db import PostgresDb
from engram.stores.postgres.rows import MEMORY_COLUMNS, as_array, message, record, utc
from engram.stores.postgres.sql_filters import compile_filter
from engram.stores.sql.dialect import Query, scope_clauses, visibility_clauses
from engram.stores.sql.rows import MESSAGE_COLUMNS
from engram.types import HistoryEntry, MemoryRecord, Scope, StoredMessage, Vector

if TYPE_CHECKING:
    from engram.stores.postgres.store import PostgresStore


def with_sources(schema: str) -> str:
    """The memory columns plus, last, the ids of the memory's source messages in message order."""
    return (
        f"{MEMORY_COLUMNS}, ARRAY(SELECT s.message_id FROM {schema}.memory_sources s "
        f"JOIN {schema}.messages g ON g.id = s.message_id WHERE s.memory_id = m.id ORDER BY g.seq)"
    )


def sourced_record(row: tuple[Any, ...]) -> MemoryRecord:
    """A record from a row of :func:`with_sources`."""
    rec = record(row[:-1])
    rec.source_message_ids.extend(row[-1])
    return rec


def full_where(q: Query, schema: str) -> tuple[str, list[Any]]:
    """Scope, visibility and filters as one SQL condition over alias ``m``."""
    clauses, params = scope_clauses(q.namespace, q.scope, "%s")
    clauses.extend(visibility_clauses(q.visibility, "%s::date", params, iso=False))
    if q.filters is not None:
        sql, filter_params = compile_filter(q.filters, fold=f"{schema}.fold")
        clauses.append(sql)
        params.extend(filter_params)
    return " AND ".join(clauses), params


class PostgresReads:
    """Reads on one (async psycopg) connection of ``store``'s pools."""

    def __init__(self, store: PostgresStore, conn: Any) -> None:
        self.store = store
        self.conn = conn
        self.s = store.settings.schema_name

    def db(self) -> PostgresDb:
        return PostgresDb(self.conn, self.s)

    def where(self, q: Query) -> tuple[str, list[Any]]:
        return full_where(q, self.s)

    async def records(self, namespace: str, memory_ids: list[str]) -> list[MemoryRecord]:
        cur = await self.conn.execute(
            f"SELECT {with_sources(self.s)} FROM {self.s}.memories m "
            "WHERE m.namespace = %s AND m.deleted_at IS NULL AND m.id = ANY(%s::text[])",
            (namespace, memory_ids),
        )
        by_id = {row[0]: sourced_record(row) for row in await cur.fetchall()}
        return [by_id[i] for i in memory_ids if i in by_id]

    async def list_page(self, q: Query, offset: int) -> ListPage:
        where, params = full_where(q, self.s)
        async with self.conn.transaction():
            await self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur = await self.conn.execute(f"SELECT count(*) FROM {self.s}.memories m WHERE {where}", params)
            total = int((await cur.fetchone())[0])
            cur = await self.conn.execute(
                f"SELECT {with_sources(self.s)} FROM {self.s}.memories m WHERE {where} "
                "ORDER BY m.observed_at DESC, m.seq DESC LIMIT %s OFFSET %s",
                [*params, q.limit, offset],
            )
            records = [sourced_record(r) for r in await cur.fetchall()]
        return ListPage(records, total)

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        cur = await self.conn.execute(
            "SELECT id, memory_id, event, old_memory, new_memory, created_at, actor_id, role, details "
            f"FROM {self.s}.history WHERE namespace = %s AND memory_id = %s ORDER BY seq",
            (namespace, memory_id),
        )
        rows = await cur.fetchall()
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], utc(r[5]), r[6], r[7], dict(r[8])) for r in rows]

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        columns = ", ".join("g." + c.strip() for c in MESSAGE_COLUMNS.split(","))
        cur = await self.conn.execute(
            f"SELECT {columns} FROM {self.s}.memory_sources s "
            f"JOIN {self.s}.messages g ON g.id = s.message_id "
            "WHERE s.memory_id = %s AND g.namespace = %s ORDER BY g.seq",
            (memory_id, namespace),
        )
        return [message(r) for r in await cur.fetchall()]

    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        cur = await self.conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM {self.s}.messages WHERE namespace = %s AND scope_key = %s "
            "ORDER BY seq DESC LIMIT %s",
            (namespace, scope.key(), limit),
        )
        return [message(r) for r in reversed(await cur.fetchall())]

    async def current_ids(self, namespace: str, scope: Scope, hashes: list[str]) -> dict[str, str]:
        cur = await self.conn.execute(
            f"SELECT hash, id FROM {self.s}.memories WHERE namespace = %s AND scope_key = %s "
            "AND hash = ANY(%s::text[]) AND deleted_at IS NULL AND superseded_by IS NULL",
            (namespace, scope.key(), hashes),
        )
        return {str(h): str(i) for h, i in await cur.fetchall()}

    async def vectors(self, namespace: str, memory_ids: list[str]) -> dict[str, Vector]:
        cur = await self.conn.execute(
            f"SELECT id, embedding FROM {self.s}.memories WHERE namespace = %s AND id = ANY(%s::text[])",
            (namespace, memory_ids),
            binary=True,  # pgvector's binary format: a buffer copy instead of parsing text
        )
        return {str(i): as_array(v) for i, v in await cur.fetchall()}
