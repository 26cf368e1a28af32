"""Entity links and stored profiles, in SQL written once for every dialect.

The statements use the generic text of :class:`~engram.stores.sql.db.Db` (``%s`` placeholders,
``{s}.`` before table names); the dialect's session hands a :class:`Db` over its connection and its own
``WHERE`` for a query (:meth:`~engram.stores.sql.dialect.Session.where`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from engram.derived import EntityLink, StoredProfile, link_from_row, link_row
from engram.stores.sql.db import Db

# The tables of the store migration "entity links and profiles" (SQLite 2, PostgreSQL 4).
TABLES: list[str] = [
    """CREATE TABLE {s}.memory_entities (
        namespace TEXT NOT NULL,
        memory_id TEXT NOT NULL,
        norm TEXT NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        aliases TEXT NOT NULL DEFAULT '[]',
        date TEXT,
        PRIMARY KEY (memory_id, norm)
    )""",
    "CREATE INDEX memory_entities_by_norm ON {s}.memory_entities (namespace, norm)",
    """CREATE TABLE {s}.profiles (
        namespace TEXT NOT NULL,
        user_id TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        PRIMARY KEY (namespace, user_id)
    )""",
]

_GONE = "memory_id NOT IN (SELECT id FROM {s}.memories WHERE deleted_at IS NULL)"


def tables(schema: str) -> list[str]:
    """The migration's statements for ``schema`` ("" when the dialect has none)."""
    prefix = f"{schema}." if schema else ""
    return [statement.replace("{s}.", prefix) for statement in TABLES]


async def link(db: Db, namespace: str, links: Sequence[EntityLink], replace: Sequence[str]) -> None:
    """Drop the links of the memories in ``replace``, then record ``links`` (repeats ignored)."""
    if replace:
        await db.many(
            "DELETE FROM {s}.memory_entities WHERE namespace = %s AND memory_id = %s",
            [(namespace, memory_id) for memory_id in replace],
        )
    if links:
        await db.many(
            "INSERT INTO {s}.memory_entities (namespace, memory_id, norm, name, type, aliases, date) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [link_row(namespace, one) for one in links],
        )


async def links(db: Db, namespace: str, where: tuple[str, list[object]]) -> list[EntityLink]:
    """The links of the memories (alias ``m``) matching ``where``, oldest observation first."""
    condition, params = where
    rows = await db.rows(
        "SELECT e.memory_id, e.name, e.type, e.aliases, e.date FROM {s}.memory_entities e "
        f"JOIN {{s}}.memories m ON m.id = e.memory_id WHERE e.namespace = %s AND {condition} "
        "ORDER BY m.observed_at, m.seq",
        [namespace, *params],
    )
    return [link_from_row(row) for row in rows]


async def get_profile(db: Db, namespace: str, user_id: str) -> StoredProfile | None:
    rows = await db.rows(
        "SELECT body FROM {s}.profiles WHERE namespace = %s AND user_id = %s", (namespace, user_id)
    )
    return StoredProfile(user_id, json.loads(rows[0][0])) if rows else None


async def put_profile(db: Db, namespace: str, profile: StoredProfile) -> None:
    await db.execute(
        "INSERT INTO {s}.profiles (namespace, user_id, body) VALUES (%s, %s, %s) "
        "ON CONFLICT (namespace, user_id) DO UPDATE SET body = excluded.body, "
        "updated_at = CURRENT_TIMESTAMP",
        (namespace, profile.user_id, json.dumps(profile.body)),
    )


async def forget(db: Db, namespace: str | None, user_id: str | None) -> None:
    """Drop profiles (of one user, one namespace or all) and the links of deleted memories."""
    if namespace is None:
        await db.execute("DELETE FROM {s}.profiles")
        await db.execute(f"DELETE FROM {{s}}.memory_entities WHERE {_GONE}")
        return
    who, params = (" AND user_id = %s", (namespace, user_id)) if user_id is not None else ("", (namespace,))
    await db.execute(f"DELETE FROM {{s}}.profiles WHERE namespace = %s{who}", params)
    await db.execute(f"DELETE FROM {{s}}.memory_entities WHERE namespace = %s AND {_GONE}", (namespace,))
