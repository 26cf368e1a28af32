"""SQLite implementation of :class:`engram.service.ServiceState` (file ``$ENGRAM_HOME/server.db``).

WAL mode and a busy timeout let several server and worker processes share the file; claims run in
``BEGIN IMMEDIATE`` transactions so two workers never take the same job.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from engram.service import (
    ApiKey,
    KeyContext,
    Organization,
    Project,
    ServiceState,
    hash_api_key,
    new_api_key,
)
from engram.stores.sqlite.service_admin import SQLiteProjectAdmin
from engram.stores.sqlite.service_jobs import SQLiteJobQueue
from engram.stores.sqlite.service_project_data import SQLiteProjectData

MIGRATIONS: list[str] = [
    # 1: tenancy and keys
    """
    CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
    CREATE TABLE projects (
        id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL,
        created_at REAL NOT NULL, rate_limit_per_minute INTEGER, UNIQUE (org_id, name));
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL, name TEXT, read_only INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
        revoked_at REAL);
    """,
    # 2: the durable job queue
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        payload TEXT NOT NULL, results TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        run_after REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        started_at REAL, completed_at REAL, claimed_by TEXT, lease_expires_at REAL,
        idempotency_key TEXT, request_hash TEXT);
    CREATE INDEX jobs_runnable ON jobs (status, run_after, created_at);
    CREATE INDEX jobs_project ON jobs (project_id, kind, created_at);
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (project_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    """,
    # 3: entities, webhooks, feedback, exports
    """
    CREATE TABLE entities (
        id INTEGER PRIMARY KEY AUTOINCREMENT, project_id TEXT NOT NULL, type TEXT NOT NULL,
        name TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        UNIQUE (project_id, type, name));
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, project_id TEXT NOT NULL, name TEXT NOT NULL,
        url TEXT NOT NULL, secret TEXT NOT NULL, event_types TEXT NOT NULL, is_active INTEGER NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL);
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT, webhook_id INTEGER NOT NULL, job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL, status_code INTEGER, error TEXT, created_at REAL NOT NULL);
    CREATE TABLE feedback (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, memory_id TEXT NOT NULL, feedback TEXT,
        feedback_reason TEXT, created_at REAL NOT NULL);
    CREATE TABLE exports (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, status TEXT NOT NULL, schema TEXT,
        filters TEXT NOT NULL, result TEXT, created_at REAL NOT NULL);
    """,
    # 4: per-project settings (custom instructions for extraction...)
    """
    ALTER TABLE projects ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    """,
]


def _short_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        project_id=row["project_id"],
        prefix=row["prefix"],
        name=row["name"],
        read_only=bool(row["read_only"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class SQLiteServiceState(SQLiteProjectAdmin, SQLiteJobQueue, SQLiteProjectData, ServiceState):
    """Server state in one SQLite file; safe to share between processes on one machine."""

    async def open(self) -> None:
        def migrate(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
            )

            def apply() -> None:
                done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
                for version, script in enumerate(MIGRATIONS, start=1):
                    if version in done:
                        continue
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))

            self._tx(conn, apply)

        await self._run(migrate)

    async def close(self) -> None:
        def shut(_: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._conn is not None:
            await self._run(shut)

    # -- tenancy --------------------------------------------------------------------------------
    async def ensure_org(self, name: str) -> Organization:
        def go(conn: sqlite3.Connection) -> Organization:
            conn.execute("INSERT OR IGNORE INTO orgs VALUES (?, ?, ?)", (_short_id("org"), name, time.time()))
            row = conn.execute("SELECT * FROM orgs WHERE name = ?", (name,)).fetchone()
            return Organization(row["id"], row["name"], row["created_at"])

        return await self._run(go)

    async def ensure_project(self, org_id: str, name: str) -> Project:
        def go(conn: sqlite3.Connection) -> Project:
            conn.execute(
                "INSERT OR IGNORE INTO projects (id, org_id, name, created_at) VALUES (?, ?, ?, ?)",
                (_short_id("proj"), org_id, name, time.time()),
            )
            row = conn.execute(
                "SELECT * FROM projects WHERE org_id = ? AND name = ?", (org_id, name)
            ).fetchone()
            return Project(
                row["id"], row["org_id"], row["name"], row["created_at"], row["rate_limit_per_minute"]
            )

        return await self._run(go)

    async def list_projects(self) -> list[tuple[Organization, Project]]:
        def go(conn: sqlite3.Connection) -> list[tuple[Organization, Project]]:
            rows = conn.execute(
                "SELECT p.*, o.name AS org_name, o.created_at AS org_created FROM projects p "
                "JOIN orgs o ON o.id = p.org_id ORDER BY o.name, p.name"
            ).fetchall()
            return [
                (
                    Organization(r["org_id"], r["org_name"], r["org_created"]),
                    Project(r["id"], r["org_id"], r["name"], r["created_at"], r["rate_limit_per_minute"]),
                )
                for r in rows
            ]

        return await self._run(go)

    async def set_rate_limit(self, project_id: str, per_minute: int | None) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE projects SET rate_limit_per_minute = ? WHERE id = ?", (per_minute, project_id)
            )
        )

    async def get_project_settings(self, project_id: str) -> dict[str, Any]:
        def go(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute("SELECT settings FROM projects WHERE id = ?", (project_id,)).fetchone()
            return dict(json.loads(row["settings"])) if row else {}

        return await self._run(go)

    async def update_project_settings(self, project_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        def go(conn: sqlite3.Connection) -> dict[str, Any]:
            def tx() -> dict[str, Any]:
                row = conn.execute("SELECT settings FROM projects WHERE id = ?", (project_id,)).fetchone()
                current = dict(json.loads(row["settings"])) if row else {}
                for key, value in changes.items():
                    if value is None:
                        current.pop(key, None)
                    else:
                        current[key] = value
                conn.execute(
                    "UPDATE projects SET settings = ? WHERE id = ?", (json.dumps(current), project_id)
                )
                return current

            return self._tx(conn, tx)

        return await self._run(go)

    async def create_key(self, project_id: str, *, name: str | None = None, read_only: bool = False) -> str:
        key = new_api_key()

        def go(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO api_keys (id, project_id, key_hash, prefix, name, read_only, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    _short_id("key"),
                    project_id,
                    hash_api_key(key),
                    key[:10],
                    name,
                    int(read_only),
                    time.time(),
                ),
            )

        await self._run(go)
        return key

    async def lookup_key(self, key_hash: str) -> KeyContext | None:
        def go(conn: sqlite3.Connection) -> KeyContext | None:
            row = conn.execute(
                "SELECT k.*, p.org_id, p.name AS project_name, p.created_at AS project_created, "
                "p.rate_limit_per_minute, o.name AS org_name, o.created_at AS org_created "
                "FROM api_keys k JOIN projects p ON p.id = k.project_id JOIN orgs o ON o.id = p.org_id "
                "WHERE k.key_hash = ? AND k.revoked_at IS NULL",
                (key_hash,),
            ).fetchone()
            if row is None:
                return None
            project = Project(
                row["project_id"],
                row["org_id"],
                row["project_name"],
                row["project_created"],
                row["rate_limit_per_minute"],
            )
            return KeyContext(
                _key(row), project, Organization(row["org_id"], row["org_name"], row["org_created"])
            )

        return await self._run(go)

    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]:
        def go(conn: sqlite3.Connection) -> list[ApiKey]:
            if project_id is None:
                rows = conn.execute("SELECT * FROM api_keys ORDER BY created_at").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM api_keys WHERE project_id = ? ORDER BY created_at", (project_id,)
                ).fetchall()
            return [_key(r) for r in rows]

        return await self._run(go)

    async def revoke_key(self, key_id: str) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE (id = ? OR prefix = ?) AND revoked_at IS NULL",
                (time.time(), key_id, key_id),
            )
            return cur.rowcount > 0

        return await self._run(go)
