"""The one migration runner, and the one migrations table layout, of every SQL store and state.

Each part of the data (``store``: memories; ``state``: the server state) has a numbered list of
:class:`Migration`; applied ones are rows of ``schema_migrations (component, version, name,
applied_at)``. The runner is called inside the dialect's transaction and lock (``BEGIN IMMEDIATE``
for SQLite, an advisory lock for PostgreSQL), so concurrent processes apply each migration once;
the dialect first asks :func:`pending` (plain reads) and takes no lock when nothing is to do.

Adding a migration is one new entry at the end of the dialect's list, with the next number::

    Migration(4, "entities", lambda s: [f"CREATE TABLE {s}.entities (...)"])

(``s`` is the PostgreSQL schema; SQLite lists ignore it.) Never edit an applied migration.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from engram.stores.sql.db import Db
from engram.types import utcnow

TABLE = "schema_migrations"


class Migration(NamedTuple):
    version: int
    name: str
    statements: Callable[[str], list[str]]  # given the schema, the statements to run in order


def script(text: str) -> Callable[[str], list[str]]:
    """Statements of a ``;``-separated SQL script (for migrations written as one script)."""
    return lambda _schema: [part for part in text.split(";\n") if part.strip()]


async def pending(db: Db, component: str, migrations: list[Migration]) -> bool:
    """Whether ``component`` has a migration to apply or an old layout to convert. Only reads, so a
    dialect checks this before taking its write lock: opening an up-to-date database never waits
    for another writer."""
    if "component" not in await db.columns(TABLE) or await db.columns("service_migrations"):
        return True
    applied = {
        r[0] for r in await db.rows(f"SELECT version FROM {{s}}.{TABLE} WHERE component = %s", [component])
    }
    return any(m.version not in applied for m in migrations)


def latest(migrations: list[Migration]) -> int:
    """The schema version once every migration is applied."""
    return max(m.version for m in migrations)


async def migrate(db: Db, component: str, migrations: list[Migration]) -> int:
    """Apply the pending migrations of ``component``; returns its schema version."""
    await _adopt_old_layout(db, component, migrations)
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS {{s}}.{TABLE} (component TEXT NOT NULL, version INTEGER NOT NULL, "
        "name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (component, version))"
    )
    applied = {
        r[0] for r in await db.rows(f"SELECT version FROM {{s}}.{TABLE} WHERE component = %s", [component])
    }
    for version, name, statements in migrations:
        if version in applied:
            continue
        for statement in statements(db.schema):
            await db.execute(statement)
        await _record(db, component, version, name, utcnow().isoformat())
    return latest(migrations)


async def _record(db: Db, component: str, version: int, name: str, at: str) -> None:
    await db.execute(
        f"INSERT INTO {{s}}.{TABLE} (component, version, name, applied_at) VALUES (%s, %s, %s, %s)",
        [component, version, name, at],
    )


# Before one layout there were three: the stores' schema_migrations (version, name, applied_at), the
# SQLite server state's schema_migrations (version, applied_at) in its own file, and the PostgreSQL
# server state's service_migrations (version, applied_at) beside the store's tables.
_OLD_TABLES = {TABLE: "", "service_migrations": "state"}


async def _adopt_old_layout(db: Db, component: str, migrations: list[Migration]) -> None:
    """Convert a database made before the one layout: its records move into the new table."""
    old: list[tuple[str, int, str, str]] = []
    for table, owner in _OLD_TABLES.items():
        columns = await db.columns(table)
        if not columns or "component" in columns:
            continue
        part = owner or ("store" if "name" in columns else "state")  # only the stores recorded names
        names = {m.version: m.name for m in migrations} if part == component else {}
        select = "version, name, applied_at" if "name" in columns else "version, NULL, applied_at"
        for version, name, at in await db.rows(f"SELECT {select} FROM {{s}}.{table}"):
            old.append((part, int(version), name or names.get(int(version), ""), _iso(at)))
        await db.execute(f"DROP TABLE {{s}}.{table}")
    if not old:
        return
    await db.execute(
        f"CREATE TABLE {{s}}.{TABLE} (component TEXT NOT NULL, version INTEGER NOT NULL, "
        "name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (component, version))"
    )
    for row in old:
        await _record(db, *row)


def _iso(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat()
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
