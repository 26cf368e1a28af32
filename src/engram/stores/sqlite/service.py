"""The server state in SQLite (file ``$ENGRAM_HOME/server.db``): the rules are in
:class:`~engram.stores.sql.service.SQLServiceState`; this module holds the schema and runs the SQL.

WAL mode and a busy timeout let several server and worker processes share the file; every
transaction is ``BEGIN IMMEDIATE``, so two workers never take the same job.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from engram.config import default_home
from engram.interfaces import BackendSettings
from engram.stores.sql.db import Db
from engram.stores.sql.dialect import run_inline
from engram.stores.sql.migrations import Migration, script
from engram.stores.sql.service import SQLServiceState
from engram.stores.sqlite.connection import connect, immediate, translated
from engram.stores.sqlite.db import SQLiteDb
from engram.stores.sqlite.schema import migrate

T = TypeVar("T")

MIGRATIONS: list[Migration] = [
    Migration(1, "tenancy and keys", script("""
CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE projects (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL,
    created_at REAL NOT NULL, rate_limit_per_minute INTEGER, UNIQUE (org_id, name));
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL, name TEXT, read_only INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    revoked_at REAL);
""")),
    Migration(2, "the durable job queue", script("""
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
""")),
    Migration(3, "entities, webhooks, feedback, exports", script("""
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
""")),
    Migration(4, "per-project settings", script("""
ALTER TABLE projects ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
""")),
    Migration(5, "change feed cursors of the webhook relay", script("""
CREATE TABLE feed_cursors (name TEXT PRIMARY KEY, position TEXT NOT NULL, updated_at REAL NOT NULL);
""")),
]  # fmt: skip


class SQLiteStateSettings(BackendSettings):
    """Settings of the SQLite server state."""

    path: Path | None = Field(None, description="database file; default $ENGRAM_HOME/server.db")
    busy_timeout_ms: int = Field(30_000, ge=0, description="how long a writer waits for the lock")


class SQLiteServiceState(SQLServiceState):
    """Server state in one SQLite file; safe to share between processes on one machine."""

    Settings = SQLiteStateSettings

    def __init__(self, settings: SQLiteStateSettings | None = None, **overrides: Any) -> None:
        base = settings or SQLiteStateSettings()
        self.settings = (
            SQLiteStateSettings.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )
        self.path = self.settings.path or default_home() / "server.db"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # synchronous=FULL: an accepted add survives power loss too
            conn = connect(self.path, self.settings.busy_timeout_ms, synchronous="FULL", what="server state")
            conn.row_factory = sqlite3.Row
            self._conn = conn
        return self._conn

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection in a worker thread (one at a time), translating errors."""

        def call() -> T:
            with self._lock, translated(self.path):
                return fn(self._connect())

        return await asyncio.to_thread(call)

    async def _run(self, fn: Callable[[Db], Awaitable[T]]) -> T:
        return await self._call(lambda conn: run_inline(fn(SQLiteDb(conn))))

    async def _transaction(self, fn: Callable[[Db], Awaitable[T]]) -> T:
        def tx(conn: sqlite3.Connection) -> T:
            with immediate(conn):
                return run_inline(fn(SQLiteDb(conn)))

        return await self._call(tx)

    async def open(self) -> None:
        await self._call(lambda conn: migrate(conn, "state", MIGRATIONS))

    async def close(self) -> None:
        def shut(_: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._conn is not None:
            await self._call(shut)
