"""Entity links and profiles in the SQLite store (tables of migration 2)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from engram.derived import EntityLink, StoredProfile, link_from_row, link_row
from engram.stores.sqlite.rows import where_clause
from engram.types import Scope, Visibility

T = TypeVar("T")

MIGRATION_002 = """
CREATE TABLE memory_entities (
    namespace TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    norm TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]',
    date TEXT,
    PRIMARY KEY (memory_id, norm)
) WITHOUT ROWID;
CREATE INDEX memory_entities_by_norm ON memory_entities (namespace, norm);
CREATE TABLE profiles (
    namespace TEXT NOT NULL,
    user_id TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (namespace, user_id)
) WITHOUT ROWID
"""


class DerivedTables:
    """Mixed into :class:`SQLiteStore`; relies on its connection and runner."""

    keeps_derived = True

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _run(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        raise NotImplementedError

    def _in_transaction(self, statements: list[tuple[str, Sequence[Any] | list[Sequence[Any]]]]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                if params and isinstance(params[0], tuple | list):
                    conn.executemany(sql, params)
                else:
                    conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def link_entities(
        self, namespace: str, links: Sequence[EntityLink], *, replace: Sequence[str] = ()
    ) -> None:
        rows = [link_row(namespace, link) for link in links]
        statements: list[tuple[str, Any]] = [
            ("DELETE FROM memory_entities WHERE namespace = ? AND memory_id = ?", (namespace, memory_id))
            for memory_id in replace
        ]
        if rows:
            sql = (
                "INSERT OR IGNORE INTO memory_entities "
                "(namespace, memory_id, norm, name, type, aliases, date) VALUES (?, ?, ?, ?, ?, ?, ?)"
            )
            statements.append((sql, rows))
        if statements:
            await self._run(self._in_transaction, statements)

    async def entity_links(self, namespace: str, scope: Scope, visibility: Visibility) -> list[EntityLink]:
        where, params = where_clause(namespace, scope, None, visibility)
        sql = (
            "SELECT e.memory_id, e.name, e.type, e.aliases, e.date FROM memory_entities e "
            f"JOIN memories m ON m.id = e.memory_id WHERE e.namespace = ? AND {where} "
            "ORDER BY m.observed_at, m.seq"
        )
        rows = await self._run(lambda: self._conn().execute(sql, [namespace, *params]).fetchall())
        return [link_from_row(row) for row in rows]

    async def get_profile(self, namespace: str, user_id: str) -> StoredProfile | None:
        sql = "SELECT body FROM profiles WHERE namespace = ? AND user_id = ?"
        row = await self._run(lambda: self._conn().execute(sql, (namespace, user_id)).fetchone())
        return StoredProfile(user_id, json.loads(row[0])) if row else None

    async def put_profile(self, namespace: str, profile: StoredProfile) -> None:
        sql = (
            "INSERT INTO profiles (namespace, user_id, body) VALUES (?, ?, ?) "
            "ON CONFLICT (namespace, user_id) DO UPDATE SET body = excluded.body, "
            "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
        )
        await self._run(self._in_transaction, [(sql, (namespace, profile.user_id, json.dumps(profile.body)))])

    async def forget_derived(self, namespace: str | None, user_id: str | None = None) -> None:
        gone = "memory_id NOT IN (SELECT id FROM memories WHERE deleted_at IS NULL)"
        if namespace is None:
            statements: list[tuple[str, Any]] = [
                ("DELETE FROM profiles", ()),
                (f"DELETE FROM memory_entities WHERE {gone}", ()),
            ]
        elif user_id is None:
            statements = [
                ("DELETE FROM profiles WHERE namespace = ?", (namespace,)),
                (f"DELETE FROM memory_entities WHERE namespace = ? AND {gone}", (namespace,)),
            ]
        else:
            statements = [
                ("DELETE FROM profiles WHERE namespace = ? AND user_id = ?", (namespace, user_id)),
                (f"DELETE FROM memory_entities WHERE namespace = ? AND {gone}", (namespace,)),
            ]
        await self._run(self._in_transaction, statements)
