"""Reads of the SQLite store: memories by id or page, their history, source and recent messages."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from engram.filters import FilterNode
from engram.interfaces import ListPage
from engram.stores.sqlite.rows import chunks, memory_from_row, message_from_row, where_clause
from engram.types import HistoryEntry, MemoryRecord, Scope, StoredMessage, Visibility

T = TypeVar("T")
_MEMORY_COLUMNS = (
    "m.id, m.text, m.hash, m.user_id, m.agent_id, m.app_id, m.run_id, m.actor_id, m.role, m.metadata, "
    "m.created_at, m.updated_at, m.observed_at, m.expires_at, m.superseded_by, m.valid_until"
)
_MESSAGE_COLUMNS = "id, user_id, agent_id, app_id, run_id, role, name, content, observed_at, created_at"


def load_records(conn: sqlite3.Connection, namespace: str, memory_ids: list[str]) -> list[MemoryRecord]:
    """The current (not deleted) memories among ``memory_ids``, in that order, with their sources."""
    by_id: dict[str, MemoryRecord] = {}
    for chunk in chunks(memory_ids):
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m "
            f"WHERE +m.namespace = ? AND m.deleted_at IS NULL AND m.id IN ({marks})",
            [namespace, *chunk],
        ):
            by_id[row[0]] = memory_from_row(row)
    attach_sources(conn, list(by_id.values()))
    return [by_id[i] for i in memory_ids if i in by_id]


def attach_sources(conn: sqlite3.Connection, records: list[MemoryRecord]) -> None:
    """Fill each record's ``source_message_ids`` (oldest message first)."""
    index = {r.id: r for r in records}
    for chunk in chunks(list(index)):
        marks = ",".join("?" * len(chunk))
        for memory_id, message_id in conn.execute(
            "SELECT s.memory_id, s.message_id FROM memory_sources s "
            f"JOIN messages g ON g.id = s.message_id "
            f"WHERE s.memory_id IN ({marks}) ORDER BY g.seq",
            chunk,
        ):
            index[memory_id].source_message_ids.append(message_id)


class MemoryReads:
    """Mixed into :class:`SQLiteStore`; relies on its connection and runner."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _run(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        raise NotImplementedError

    async def get(self, namespace: str, memory_id: str) -> MemoryRecord | None:
        found = await self.get_many(namespace, [memory_id])
        return found[0] if found else None

    async def get_many(self, namespace: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
        if not memory_ids:
            return []
        return await self._run(self._get_many_sync, namespace, list(memory_ids))

    def _get_many_sync(self, namespace: str, memory_ids: list[str]) -> list[MemoryRecord]:
        return load_records(self._conn(), namespace, memory_ids)

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
        return await self._run(self._list_sync, namespace, scope, filters, visibility, limit, offset)

    def _list_sync(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        limit: int,
        offset: int,
    ) -> ListPage:
        where, params = where_clause(namespace, scope, filters, visibility)
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            total = conn.execute(f"SELECT COUNT(*) FROM memories m WHERE {where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where} "
                "ORDER BY m.observed_at DESC, m.seq DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            records = [memory_from_row(r) for r in rows]
            attach_sources(conn, records)
        finally:
            conn.execute("COMMIT")
        return ListPage(records, int(total))

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        return await self._run(self._history_sync, namespace, memory_id)

    def _history_sync(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        rows = (
            self._conn()
            .execute(
                "SELECT id, memory_id, event, old_memory, new_memory, created_at, actor_id, role, details "
                "FROM history WHERE namespace = ? AND memory_id = ? ORDER BY seq",
                (namespace, memory_id),
            )
            .fetchall()
        )
        return [
            HistoryEntry(
                r[0], r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5]), r[6], r[7], json.loads(r[8])
            )
            for r in rows
        ]

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        return await self._run(self._messages_for_sync, namespace, memory_id)

    def _messages_for_sync(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {', '.join('g.' + c.strip() for c in _MESSAGE_COLUMNS.split(','))} "
                "FROM memory_sources s JOIN messages g ON g.id = s.message_id "
                "WHERE s.memory_id = ? AND g.namespace = ? ORDER BY g.seq",
                (memory_id, namespace),
            )
            .fetchall()
        )
        return [message_from_row(r) for r in rows]

    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        if limit <= 0:
            return []
        return await self._run(self._recent_sync, namespace, scope, limit)

    def _recent_sync(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE namespace = ? AND scope_key = ? "
                "ORDER BY seq DESC LIMIT ?",
                (namespace, scope.key(), limit),
            )
            .fetchall()
        )
        return [message_from_row(r) for r in reversed(rows)]

    async def find_by_hash(self, namespace: str, scope: Scope, hashes: Sequence[str]) -> dict[str, str]:
        if not hashes:
            return {}
        return await self._run(self._find_by_hash_sync, namespace, scope, list(hashes))

    def _find_by_hash_sync(self, namespace: str, scope: Scope, hashes: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in chunks(hashes):
            marks = ",".join("?" * len(chunk))
            found.update(
                self._conn()
                .execute(
                    "SELECT hash, id FROM memories WHERE namespace = ? AND scope_key = ? "
                    f"AND hash IN ({marks}) "
                    "AND deleted_at IS NULL AND superseded_by IS NULL",
                    [namespace, scope.key(), *chunk],
                )
                .fetchall()
            )
        return found
