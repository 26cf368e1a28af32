"""Entity links and profiles in the PostgreSQL store (tables of migration 4)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engram.derived import EntityLink, StoredProfile, link_from_row, link_row
from engram.stores.postgres import search
from engram.stores.postgres.connection import PostgresConnection
from engram.types import Scope, Visibility


def migration_004(s: str) -> list[str]:
    """Entity links (one row per memory and entity) and stored profiles."""
    return [
        f"""CREATE TABLE {s}.memory_entities (
            namespace text NOT NULL,
            memory_id text NOT NULL,
            norm text NOT NULL,
            name text NOT NULL,
            type text NOT NULL,
            aliases text NOT NULL DEFAULT '[]',
            date text,
            PRIMARY KEY (memory_id, norm)
        )""",
        f"CREATE INDEX memory_entities_by_norm ON {s}.memory_entities (namespace, norm)",
        f"""CREATE TABLE {s}.profiles (
            namespace text NOT NULL,
            user_id text NOT NULL,
            body jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (namespace, user_id)
        )""",
    ]


class DerivedTables(PostgresConnection):
    """Mixed into :class:`~engram.stores.postgres.PostgresStore`."""

    keeps_derived = True

    async def link_entities(
        self, namespace: str, links: Sequence[EntityLink], *, replace: Sequence[str] = ()
    ) -> None:
        rows = [link_row(namespace, link) for link in links]
        if not rows and not replace:
            return
        sql = (
            f"INSERT INTO {self._s}.memory_entities (namespace, memory_id, norm, name, type, aliases, date) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        )

        async def write(conn: Any) -> None:
            if replace:
                await conn.execute(
                    f"DELETE FROM {self._s}.memory_entities "
                    "WHERE namespace = %s AND memory_id = ANY(%s::text[])",
                    (namespace, list(replace)),
                )
            if rows:
                async with conn.cursor() as cur:
                    await cur.executemany(sql, rows)

        await self._write(namespace, write)

    async def entity_links(self, namespace: str, scope: Scope, visibility: Visibility) -> list[EntityLink]:
        where, params = search.full_where(namespace, scope, None, visibility, self._s)
        s = self._s
        async with self._read_conn(namespace) as conn:
            cur = await conn.execute(
                f"SELECT e.memory_id, e.name, e.type, e.aliases, e.date FROM {s}.memory_entities e "
                f"JOIN {s}.memories m ON m.id = e.memory_id WHERE e.namespace = %s AND {where} "
                "ORDER BY m.observed_at, m.seq",
                [namespace, *params],
            )
            return [link_from_row(row) for row in await cur.fetchall()]

    async def get_profile(self, namespace: str, user_id: str) -> StoredProfile | None:
        async with self._read_conn(namespace) as conn:
            cur = await conn.execute(
                f"SELECT body FROM {self._s}.profiles WHERE namespace = %s AND user_id = %s",
                (namespace, user_id),
            )
            row = await cur.fetchone()
        return StoredProfile(user_id, dict(row[0])) if row else None

    async def put_profile(self, namespace: str, profile: StoredProfile) -> None:
        sql = (
            f"INSERT INTO {self._s}.profiles (namespace, user_id, body) VALUES (%s, %s, %s::jsonb) "
            "ON CONFLICT (namespace, user_id) DO UPDATE SET body = excluded.body, updated_at = now()"
        )

        async def write(conn: Any) -> None:
            await conn.execute(sql, (namespace, profile.user_id, json.dumps(profile.body)))

        await self._write(namespace, write)

    async def forget_derived(self, namespace: str | None, user_id: str | None = None) -> None:
        s = self._s
        gone = f"NOT EXISTS (SELECT 1 FROM {s}.memories m WHERE m.id = e.memory_id AND m.deleted_at IS NULL)"
        statements: list[tuple[str, tuple[Any, ...]]]
        if namespace is None:
            statements = [
                (f"DELETE FROM {s}.profiles", ()),
                (f"DELETE FROM {s}.memory_entities e WHERE {gone}", ()),
            ]
        else:
            who = " AND user_id = %s" if user_id is not None else ""
            statements = [
                (
                    f"DELETE FROM {s}.profiles WHERE namespace = %s{who}",
                    (namespace, *([user_id] if user_id else [])),
                ),
                (f"DELETE FROM {s}.memory_entities e WHERE e.namespace = %s AND {gone}", (namespace,)),
            ]

        async def write(conn: Any) -> None:
            for sql, params in statements:
                await conn.execute(sql, params)

        await self._write(namespace, write)
