"""SQL of the SQLite store's reads: memories by id or page, their history, source and recent messages."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

import numpy as np

from engram.interfaces import ListPage
from engram.stores.sql.dialect import Query
from engram.stores.sql.rows import MESSAGE_COLUMNS, memory_columns
from engram.stores.sqlite.db import SQLiteDb
from engram.stores.sqlite.rows import chunks, memory_from_row, message_from_row, where_clause
from engram.stores.sqlite.vector_cache import VectorCache
from engram.types import HistoryEntry, MemoryRecord, Scope, StoredMessage, Vector

_MEMORY_COLUMNS = memory_columns()


def generation(conn: sqlite3.Connection) -> int:
    """The store's write generation (every write transaction bumps it; the vector cache keys on it)."""
    return int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])


class SQLiteReads:
    """Reads on one connection (from a worker thread: blocking calls inside ``async def``)."""

    def __init__(self, conn: sqlite3.Connection, cache: VectorCache, dim: int) -> None:
        self.conn = conn
        self.cache = cache
        self.dim = dim

    def db(self) -> SQLiteDb:
        return SQLiteDb(self.conn)

    def where(self, q: Query) -> tuple[str, list[Any]]:
        return where_clause(q.namespace, q.scope, q.filters, q.visibility)

    async def records(self, namespace: str, memory_ids: list[str]) -> list[MemoryRecord]:
        by_id: dict[str, MemoryRecord] = {}
        for chunk in chunks(memory_ids):
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT {_MEMORY_COLUMNS} FROM memories m "
                f"WHERE +m.namespace = ? AND m.deleted_at IS NULL AND m.id IN ({marks})",
                [namespace, *chunk],
            ):
                by_id[row[0]] = memory_from_row(row)
        self._attach_sources(list(by_id.values()))
        return [by_id[i] for i in memory_ids if i in by_id]

    def _attach_sources(self, records: list[MemoryRecord]) -> None:
        """Fill each record's ``source_message_ids`` (oldest message first)."""
        index = {r.id: r for r in records}
        for chunk in chunks(list(index)):
            marks = ",".join("?" * len(chunk))
            for memory_id, message_id in self.conn.execute(
                "SELECT s.memory_id, s.message_id FROM memory_sources s "
                f"JOIN messages g ON g.id = s.message_id WHERE s.memory_id IN ({marks}) ORDER BY g.seq",
                chunk,
            ):
                index[memory_id].source_message_ids.append(message_id)

    async def list_page(self, q: Query, offset: int) -> ListPage:
        where, params = where_clause(q.namespace, q.scope, q.filters, q.visibility)
        self.conn.execute("BEGIN")
        try:
            total = self.conn.execute(f"SELECT COUNT(*) FROM memories m WHERE {where}", params).fetchone()[0]
            rows = self.conn.execute(
                f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where} "
                "ORDER BY m.observed_at DESC, m.seq DESC LIMIT ? OFFSET ?",
                [*params, q.limit, offset],
            ).fetchall()
            records = [memory_from_row(r) for r in rows]
            self._attach_sources(records)
        finally:
            self.conn.execute("COMMIT")
        return ListPage(records, int(total))

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        rows = self.conn.execute(
            "SELECT id, memory_id, event, old_memory, new_memory, created_at, actor_id, role, details "
            "FROM history WHERE namespace = ? AND memory_id = ? ORDER BY seq",
            (namespace, memory_id),
        ).fetchall()
        return [
            HistoryEntry(
                r[0], r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5]), r[6], r[7], json.loads(r[8])
            )
            for r in rows
        ]

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        columns = ", ".join("g." + c.strip() for c in MESSAGE_COLUMNS.split(","))
        rows = self.conn.execute(
            f"SELECT {columns} FROM memory_sources s JOIN messages g ON g.id = s.message_id "
            "WHERE s.memory_id = ? AND g.namespace = ? ORDER BY g.seq",
            (memory_id, namespace),
        ).fetchall()
        return [message_from_row(r) for r in rows]

    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        rows = self.conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE namespace = ? AND scope_key = ? "
            "ORDER BY seq DESC LIMIT ?",
            (namespace, scope.key(), limit),
        ).fetchall()
        return [message_from_row(r) for r in reversed(rows)]

    async def current_ids(self, namespace: str, scope: Scope, hashes: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in chunks(hashes):
            marks = ",".join("?" * len(chunk))
            found.update(
                self.conn.execute(
                    "SELECT hash, id FROM memories WHERE namespace = ? AND scope_key = ? "
                    f"AND hash IN ({marks}) AND deleted_at IS NULL AND superseded_by IS NULL",
                    [namespace, scope.key(), *chunk],
                ).fetchall()
            )
        return found

    async def vectors(self, namespace: str, memory_ids: list[str]) -> dict[str, Vector]:
        out = self.cache.lookup(namespace, memory_ids, generation(self.conn))
        missing = [mid for mid in memory_ids if mid not in out]
        for chunk in chunks(missing):
            marks = ",".join("?" * len(chunk))
            for memory_id, blob in self.conn.execute(
                "SELECT m.id, v.embedding FROM memories m JOIN vectors v ON v.seq = m.seq "
                f"WHERE +m.namespace = ? AND m.id IN ({marks})",
                [namespace, *chunk],
            ):
                out[memory_id] = np.frombuffer(blob, dtype=np.float32)
        return out
