"""SQLite implementation of :class:`engram.service.ServiceState` (file ``$ENGRAM_HOME/server.db``).

WAL mode and a busy timeout let several server and worker processes share the file; claims run in
``BEGIN IMMEDIATE`` transactions so two workers never take the same job.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from engram.config import default_home
from engram.errors import ConflictError, StoreError
from engram.service import (
    ApiKey,
    Delivery,
    Enqueued,
    Entity,
    Export,
    Job,
    JobKind,
    KeyContext,
    Organization,
    Project,
    ServiceState,
    Webhook,
    hash_api_key,
    new_api_key,
)

T = TypeVar("T")

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

_ENTITY_FIELDS = {"user_id": "user", "agent_id": "agent", "app_id": "app", "run_id": "run"}


def _short_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        project_id=row["project_id"],
        kind=row["kind"],
        status=row["status"],
        payload=json.loads(row["payload"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        results=json.loads(row["results"]) if row["results"] is not None else None,
        error=row["error"],
        attempts=row["attempts"],
        run_after=row["run_after"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        claimed_by=row["claimed_by"],
        lease_expires_at=row["lease_expires_at"],
        idempotency_key=row["idempotency_key"],
    )


def _webhook(row: sqlite3.Row) -> Webhook:
    return Webhook(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        url=row["url"],
        secret=row["secret"],
        event_types=json.loads(row["event_types"]),
        is_active=bool(row["is_active"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


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


class SQLiteServiceState(ServiceState):
    """Server state in one SQLite file; safe to share between processes on one machine."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_home() / "server.db"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=FULL")  # an accepted add survives power loss too
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                try:
                    return fn(self._connect())
                except sqlite3.Error as e:
                    raise StoreError(f"server state database error: {e}") from e

        return await asyncio.to_thread(call)

    @staticmethod
    def _tx(conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

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

    # -- jobs -----------------------------------------------------------------------------------
    async def enqueue(
        self,
        project_id: str,
        kind: JobKind,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        claim_as: str | None = None,
        lease_seconds: float = 60.0,
        run_after: float | None = None,
    ) -> Enqueued:
        def go(conn: sqlite3.Connection) -> Enqueued:
            def tx() -> Enqueued:
                if idempotency_key is not None:
                    row = conn.execute(
                        "SELECT * FROM jobs WHERE project_id = ? AND idempotency_key = ?",
                        (project_id, idempotency_key),
                    ).fetchone()
                    if row is not None:
                        if request_hash is not None and row["request_hash"] != request_hash:
                            raise ConflictError(
                                "Idempotency-Key was already used with a different request",
                                details={"field": "Idempotency-Key", "event_id": row["id"]},
                            )
                        return Enqueued(_job(row), created=False)
                now = time.time()
                job_id = str(uuid.uuid4())
                status = "RUNNING" if claim_as else "PENDING"
                conn.execute(
                    "INSERT INTO jobs (id, project_id, kind, status, payload, attempts, run_after, "
                    "created_at, updated_at, started_at, claimed_by, lease_expires_at, idempotency_key, "
                    "request_hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        project_id,
                        kind,
                        status,
                        json.dumps(payload),
                        1 if claim_as else 0,
                        run_after if run_after is not None else now,
                        now,
                        now,
                        now if claim_as else None,
                        claim_as,
                        now + lease_seconds if claim_as else None,
                        idempotency_key,
                        request_hash,
                    ),
                )
                row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
                return Enqueued(_job(row), created=True)

            return self._tx(conn, tx)

        return await self._run(go)

    async def get_job(self, project_id: str, job_id: str) -> Job | None:
        def go(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                "SELECT * FROM jobs WHERE id = ? AND project_id = ?", (job_id, project_id)
            ).fetchone()
            return _job(row) if row else None

        return await self._run(go)

    async def list_jobs(
        self, project_id: str, *, kind: JobKind, status: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        def go(conn: sqlite3.Connection) -> tuple[list[Job], int]:
            where = "project_id = ? AND kind = ?" + (" AND status = ?" if status else "")
            args: list[Any] = [project_id, kind] + ([status] if status else [])
            total = conn.execute(f"SELECT count(*) FROM jobs WHERE {where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
            return [_job(r) for r in rows], int(total)

        return await self._run(go)

    async def claim(
        self, worker_id: str, *, kinds: tuple[JobKind, ...], lease_seconds: float, max_attempts: int
    ) -> Job | None:
        marks = ",".join("?" for _ in kinds)

        def go(conn: sqlite3.Connection) -> Job | None:
            runnable = conn.execute(  # a cheap read first: idle polls take no write lock
                f"SELECT 1 FROM jobs WHERE kind IN ({marks}) AND ((status = 'PENDING' AND run_after <= ?)"
                " OR (status = 'RUNNING' AND lease_expires_at <= ?)) LIMIT 1",
                (*kinds, time.time(), time.time()),
            ).fetchone()
            if runnable is None:
                return None

            def tx() -> Job | None:
                now = time.time()
                # Jobs whose worker died too often end FAILED rather than crash-looping.
                conn.execute(
                    f"UPDATE jobs SET status = 'FAILED', error = ?, completed_at = ?, updated_at = ?, "
                    f"claimed_by = NULL WHERE status = 'RUNNING' AND lease_expires_at <= ? AND attempts >= ? "
                    f"AND kind IN ({marks})",
                    (
                        f"abandoned: the worker was lost {max_attempts} times",
                        now,
                        now,
                        now,
                        max_attempts,
                        *kinds,
                    ),
                )
                row = conn.execute(
                    f"SELECT id FROM jobs WHERE kind IN ({marks})"
                    " AND ((status = 'PENDING' AND run_after <= ?)"
                    " OR (status = 'RUNNING' AND lease_expires_at <= ?))"
                    " ORDER BY run_after, created_at LIMIT 1",
                    (*kinds, now, now),
                ).fetchone()
                if row is None:
                    return None
                conn.execute(
                    "UPDATE jobs SET status = 'RUNNING', claimed_by = ?, lease_expires_at = ?, "
                    "attempts = attempts + 1, started_at = COALESCE(started_at, ?), updated_at = ? "
                    "WHERE id = ?",
                    (worker_id, now + lease_seconds, now, now, row["id"]),
                )
                return _job(conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

            return self._tx(conn, tx)

        return await self._run(go)

    async def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cur = conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, updated_at = ? "
                "WHERE id = ? AND claimed_by = ? AND status = 'RUNNING'",
                (now + lease_seconds, now, job_id, worker_id),
            )
            return cur.rowcount == 1

        return await self._run(go)

    async def complete(self, job_id: str, worker_id: str, results: list[Any]) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cur = conn.execute(
                "UPDATE jobs SET status = 'SUCCEEDED', results = ?, error = NULL, completed_at = ?, "
                "updated_at = ?, lease_expires_at = NULL "
                "WHERE id = ? AND claimed_by = ? AND status = 'RUNNING'",
                (json.dumps(results), now, now, job_id, worker_id),
            )
            return cur.rowcount == 1

        return await self._run(go)

    async def fail(self, job_id: str, worker_id: str, error: str, *, retry_at: float | None = None) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            now = time.time()
            if retry_at is not None:
                cur = conn.execute(
                    "UPDATE jobs SET status = 'PENDING', error = ?, run_after = ?, updated_at = ?, "
                    "claimed_by = NULL, lease_expires_at = NULL "
                    "WHERE id = ? AND claimed_by = ? AND status = 'RUNNING'",
                    (error, retry_at, now, job_id, worker_id),
                )
            else:
                cur = conn.execute(
                    "UPDATE jobs SET status = 'FAILED', error = ?, completed_at = ?, updated_at = ?, "
                    "lease_expires_at = NULL WHERE id = ? AND claimed_by = ? AND status = 'RUNNING'",
                    (error, now, now, job_id, worker_id),
                )
            return cur.rowcount == 1

        return await self._run(go)

    # -- entities -------------------------------------------------------------------------------
    async def touch_entities(self, project_id: str, ids: dict[str, str]) -> None:
        pairs = [(_ENTITY_FIELDS[k], v) for k, v in ids.items() if k in _ENTITY_FIELDS and v]
        if not pairs:
            return

        def go(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.executemany(
                "INSERT INTO entities (project_id, type, name, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (project_id, type, name) DO UPDATE SET updated_at = excluded.updated_at",
                [(project_id, t, n, now, now) for t, n in pairs],
            )

        await self._run(go)

    async def list_entities(self, project_id: str) -> list[Entity]:
        def go(conn: sqlite3.Connection) -> list[Entity]:
            rows = conn.execute(
                "SELECT * FROM entities WHERE project_id = ? ORDER BY type, name", (project_id,)
            ).fetchall()
            return [
                Entity(r["id"], r["project_id"], r["type"], r["name"], r["created_at"], r["updated_at"])
                for r in rows
            ]

        return await self._run(go)

    async def delete_entity(self, project_id: str, type_: str, name: str) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM entities WHERE project_id = ? AND type = ? AND name = ?",
                (project_id, type_, name),
            )
            return cur.rowcount > 0

        return await self._run(go)

    # -- webhooks -------------------------------------------------------------------------------
    async def create_webhook(self, project_id: str, name: str, url: str, event_types: list[str]) -> Webhook:
        import secrets

        def go(conn: sqlite3.Connection) -> Webhook:
            now = time.time()
            cur = conn.execute(
                "INSERT INTO webhooks (project_id, name, url, secret, event_types, is_active, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                (project_id, name, url, "whsec_" + secrets.token_hex(24), json.dumps(event_types), now, now),
            )
            return _webhook(conn.execute("SELECT * FROM webhooks WHERE id = ?", (cur.lastrowid,)).fetchone())

        return await self._run(go)

    async def list_webhooks(self, project_id: str) -> list[Webhook]:
        def go(conn: sqlite3.Connection) -> list[Webhook]:
            rows = conn.execute("SELECT * FROM webhooks WHERE project_id = ? ORDER BY id", (project_id,))
            return [_webhook(r) for r in rows.fetchall()]

        return await self._run(go)

    async def get_webhook(self, project_id: str, webhook_id: int) -> Webhook | None:
        def go(conn: sqlite3.Connection) -> Webhook | None:
            row = conn.execute(
                "SELECT * FROM webhooks WHERE id = ? AND project_id = ?", (webhook_id, project_id)
            ).fetchone()
            return _webhook(row) if row else None

        return await self._run(go)

    async def update_webhook(
        self, project_id: str, webhook_id: int, changes: dict[str, Any]
    ) -> Webhook | None:
        allowed = {"name", "url", "event_types", "is_active"}
        sets = {k: v for k, v in changes.items() if k in allowed and v is not None}
        if "event_types" in sets:
            sets["event_types"] = json.dumps(sets["event_types"])
        if "is_active" in sets:
            sets["is_active"] = int(bool(sets["is_active"]))

        def go(conn: sqlite3.Connection) -> Webhook | None:
            if sets:
                assignments = ", ".join(f"{k} = ?" for k in sets)
                conn.execute(
                    f"UPDATE webhooks SET {assignments}, updated_at = ? WHERE id = ? AND project_id = ?",
                    (*sets.values(), time.time(), webhook_id, project_id),
                )
            row = conn.execute(
                "SELECT * FROM webhooks WHERE id = ? AND project_id = ?", (webhook_id, project_id)
            ).fetchone()
            return _webhook(row) if row else None

        return await self._run(go)

    async def delete_webhook(self, project_id: str, webhook_id: int) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM webhooks WHERE id = ? AND project_id = ?", (webhook_id, project_id)
            )
            return cur.rowcount > 0

        return await self._run(go)

    async def log_delivery(self, delivery: Delivery) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO webhook_deliveries "
                "(webhook_id, job_id, attempt, status_code, error, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    delivery.webhook_id,
                    delivery.job_id,
                    delivery.attempt,
                    delivery.status_code,
                    delivery.error,
                    delivery.created_at,
                ),
            )
        )

    async def list_deliveries(self, webhook_id: int) -> list[Delivery]:
        def go(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id", (webhook_id,)
            ).fetchall()
            return [
                Delivery(
                    r["webhook_id"], r["job_id"], r["attempt"], r["status_code"], r["error"], r["created_at"]
                )
                for r in rows
            ]

        return await self._run(go)

    # -- feedback and exports ------------------------------------------------------------------
    async def add_feedback(
        self, project_id: str, memory_id: str, feedback: str | None, reason: str | None
    ) -> dict[str, Any]:
        feedback_id = str(uuid.uuid4())
        await self._run(
            lambda c: c.execute(
                "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?)",
                (feedback_id, project_id, memory_id, feedback, reason, time.time()),
            )
        )
        return {"id": feedback_id, "memory_id": memory_id, "feedback": feedback, "feedback_reason": reason}

    async def create_export(
        self, project_id: str, schema: Any, filters: dict[str, Any], result: Any
    ) -> Export:
        export = Export(str(uuid.uuid4()), project_id, "COMPLETED", schema, filters, result, time.time())
        await self._run(
            lambda c: c.execute(
                "INSERT INTO exports VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    export.id,
                    project_id,
                    export.status,
                    json.dumps(schema),
                    json.dumps(filters),
                    json.dumps(result),
                    export.created_at,
                ),
            )
        )
        return export

    async def get_export(self, project_id: str, export_id: str | None) -> Export | None:
        def go(conn: sqlite3.Connection) -> Export | None:
            if export_id is None:
                row = conn.execute(
                    "SELECT * FROM exports WHERE project_id = ? ORDER BY created_at DESC LIMIT 1",
                    (project_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT * FROM exports WHERE id = ? AND project_id = ?", (export_id, project_id)
                ).fetchone()
            if row is None:
                return None
            return Export(
                row["id"],
                row["project_id"],
                row["status"],
                json.loads(row["schema"] or "null"),
                json.loads(row["filters"]),
                json.loads(row["result"] or "null"),
                row["created_at"],
            )

        return await self._run(go)
