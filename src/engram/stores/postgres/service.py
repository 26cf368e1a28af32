"""PostgreSQL implementation of :class:`engram.service.ServiceState`: tenancy, API keys, the durable
job queue, webhooks, for any number of server and worker processes on any number of machines.

Workers claim jobs with ``SELECT ... FOR UPDATE SKIP LOCKED`` (no two take the same job, none waits
for another); leases are compared with the database's clock, so machines' clocks need not agree.
A job whose worker died (its lease expired) is claimed again; ``complete`` and ``fail`` are guarded
by the claim, so a job completes exactly once.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from engram.errors import ConfigError, ConflictError, EngramError, MissingDependencyError, StoreError
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
from engram.stores.postgres.schema import MIGRATION_LOCK_KEY, check_schema_name
from engram.stores.postgres.service_admin import PostgresProjectAdmin

_NOW = "extract(epoch FROM clock_timestamp())::float8"
_ENTITY_FIELDS = {"user_id": "user", "agent_id": "agent", "app_id": "app", "run_id": "run"}


def _migrations(s: str) -> list[list[str]]:
    return [
        [
            f"""CREATE TABLE {s}.orgs (id text PRIMARY KEY, name text NOT NULL UNIQUE,
                created_at float8 NOT NULL)""",
            f"""CREATE TABLE {s}.projects (id text PRIMARY KEY, org_id text NOT NULL REFERENCES {s}.orgs(id),
                name text NOT NULL, created_at float8 NOT NULL, rate_limit_per_minute integer,
                settings text NOT NULL DEFAULT '{{}}', UNIQUE (org_id, name))""",
            f"""CREATE TABLE {s}.api_keys (id text PRIMARY KEY,
                project_id text NOT NULL REFERENCES {s}.projects(id), key_hash text NOT NULL UNIQUE,
                prefix text NOT NULL, name text, read_only boolean NOT NULL DEFAULT false,
                created_at float8 NOT NULL, revoked_at float8)""",
            f"""CREATE TABLE {s}.jobs (id text PRIMARY KEY, project_id text NOT NULL, kind text NOT NULL,
                status text NOT NULL, payload text NOT NULL, results text, error text,
                attempts integer NOT NULL DEFAULT 0, run_after float8 NOT NULL DEFAULT 0,
                created_at float8 NOT NULL, updated_at float8 NOT NULL, started_at float8,
                completed_at float8, claimed_by text, lease_expires_at float8, idempotency_key text,
                request_hash text)""",
            f"CREATE INDEX jobs_pending ON {s}.jobs (run_after, created_at) WHERE status = 'PENDING'",
            f"CREATE INDEX jobs_running ON {s}.jobs (lease_expires_at) WHERE status = 'RUNNING'",
            f"CREATE INDEX jobs_project ON {s}.jobs (project_id, kind, created_at)",
            f"""CREATE UNIQUE INDEX jobs_idempotency ON {s}.jobs (project_id, idempotency_key)
                WHERE idempotency_key IS NOT NULL""",
            f"""CREATE TABLE {s}.entities (id bigserial PRIMARY KEY, project_id text NOT NULL,
                type text NOT NULL, name text NOT NULL, created_at float8 NOT NULL,
                updated_at float8 NOT NULL, UNIQUE (project_id, type, name))""",
            f"""CREATE TABLE {s}.webhooks (id bigserial PRIMARY KEY, project_id text NOT NULL,
                name text NOT NULL, url text NOT NULL, secret text NOT NULL, event_types text NOT NULL,
                is_active boolean NOT NULL, created_at float8 NOT NULL, updated_at float8 NOT NULL)""",
            f"""CREATE TABLE {s}.webhook_deliveries (id bigserial PRIMARY KEY, webhook_id bigint NOT NULL,
                job_id text NOT NULL, attempt integer NOT NULL, status_code integer, error text,
                created_at float8 NOT NULL)""",
            f"""CREATE TABLE {s}.feedback (id text PRIMARY KEY, project_id text NOT NULL,
                memory_id text NOT NULL, feedback text, feedback_reason text, created_at float8 NOT NULL)""",
            f"""CREATE TABLE {s}.exports (id text PRIMARY KEY, project_id text NOT NULL, status text NOT NULL,
                schema text, filters text NOT NULL, result text, created_at float8 NOT NULL)""",
        ],
    ]


def _short_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _loads(value: str | None) -> Any:
    return json.loads(value) if value is not None else None


def _job(r: dict[str, Any]) -> Job:
    return Job(
        id=r["id"], project_id=r["project_id"], kind=r["kind"], status=r["status"],
        payload=json.loads(r["payload"]), created_at=r["created_at"], updated_at=r["updated_at"],
        results=_loads(r["results"]), error=r["error"], attempts=r["attempts"], run_after=r["run_after"],
        started_at=r["started_at"], completed_at=r["completed_at"], claimed_by=r["claimed_by"],
        lease_expires_at=r["lease_expires_at"], idempotency_key=r["idempotency_key"],
    )  # fmt: skip


def _webhook(r: dict[str, Any]) -> Webhook:
    return Webhook(
        id=r["id"], project_id=r["project_id"], name=r["name"], url=r["url"], secret=r["secret"],
        event_types=json.loads(r["event_types"]), is_active=bool(r["is_active"]),
        created_at=r["created_at"], updated_at=r["updated_at"],
    )  # fmt: skip


def _key(r: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=r["id"], project_id=r["project_id"], prefix=r["prefix"], name=r["name"],
        read_only=bool(r["read_only"]), created_at=r["created_at"], revoked_at=r["revoked_at"],
    )  # fmt: skip


def _project(r: dict[str, Any]) -> Project:
    return Project(r["id"], r["org_id"], r["name"], r["created_at"], r["rate_limit_per_minute"])


class PostgresServiceState(PostgresProjectAdmin, ServiceState):
    """Server state in PostgreSQL (the same database and schema as :class:`PostgresStore` by default).

    Configure with ``ENGRAM_SERVER_STATE_BACKEND=postgres`` and ``ENGRAM_SERVER_STATE_CONFIG=
    '{"url": "postgresql://..."}'`` (the URL defaults to ``$ENGRAM_DATABASE_URL``).
    """

    def __init__(
        self,
        url: str | None = None,
        schema_name: str = "engram",
        min_pool_size: int = 1,
        max_pool_size: int = 5,
        pool_timeout: float = 30.0,
    ) -> None:
        self._url_setting = url
        self._s = check_schema_name(schema_name)
        self._min, self._max, self._timeout = min_pool_size, max_pool_size, pool_timeout
        self._pool: Any = None

    # -- plumbing -------------------------------------------------------------------------------
    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        if self._pool is None:
            raise StoreError("The server state is not open; call open() first")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except EngramError:
            raise
        except Exception as e:
            import psycopg

            if isinstance(e, psycopg.Error):
                raise StoreError(f"server state database error ({type(e).__name__}): {e}") from e
            raise

    async def _all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall()) if cur.description else []

    async def _one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _count(self, sql: str, params: Any = ()) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(sql, params)
            return int(cur.rowcount)

    async def open(self) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool
        except ImportError as e:
            raise MissingDependencyError(e.name or "psycopg", "postgres") from e
        url = self._url_setting or os.environ.get("ENGRAM_DATABASE_URL")
        if not url:
            raise ConfigError(
                "The postgres server state needs a database URL: set state_config.url or ENGRAM_DATABASE_URL",
                details={"field": "url"},
            )
        s = self._s
        try:
            async with (
                await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
                conn.transaction(),
            ):
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {s}.service_migrations "
                    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute(f"SELECT version FROM {s}.service_migrations")
                done = {r[0] for r in await cur.fetchall()}
                for version, statements in enumerate(_migrations(s), start=1):
                    if version in done:
                        continue
                    for statement in statements:
                        await conn.execute(statement)
                    await conn.execute(
                        f"INSERT INTO {s}.service_migrations (version) VALUES (%s)", (version,)
                    )
            pool = AsyncConnectionPool(
                url, min_size=self._min, max_size=self._max, timeout=self._timeout, open=False,
                kwargs={"autocommit": True, "row_factory": dict_row}, name=f"engram-state-{s}",
            )  # fmt: skip
            await pool.open(wait=self._min > 0, timeout=self._timeout)
        except psycopg.Error as e:
            raise StoreError(f"Cannot open the server state in PostgreSQL: {e}") from e
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- tenancy --------------------------------------------------------------------------------
    async def ensure_org(self, name: str) -> Organization:
        s = self._s
        row = await self._one(
            f"WITH ins AS (INSERT INTO {s}.orgs VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO NOTHING RETURNING *) "
            f"SELECT * FROM ins UNION ALL SELECT * FROM {s}.orgs WHERE name = %s LIMIT 1",
            (_short_id("org"), name, time.time(), name),
        )
        assert row is not None
        return Organization(row["id"], row["name"], row["created_at"])

    async def ensure_project(self, org_id: str, name: str) -> Project:
        s = self._s
        row = await self._one(
            f"WITH ins AS (INSERT INTO {s}.projects (id, org_id, name, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (org_id, name) DO NOTHING RETURNING *) "
            f"SELECT * FROM ins UNION ALL SELECT * FROM {s}.projects WHERE org_id = %s AND name = %s LIMIT 1",
            (_short_id("proj"), org_id, name, time.time(), org_id, name),
        )
        assert row is not None
        return _project(row)

    async def list_projects(self) -> list[tuple[Organization, Project]]:
        rows = await self._all(
            f"SELECT p.*, o.name AS org_name, o.created_at AS org_created FROM {self._s}.projects p "
            f"JOIN {self._s}.orgs o ON o.id = p.org_id ORDER BY o.name, p.name"
        )
        return [(Organization(r["org_id"], r["org_name"], r["org_created"]), _project(r)) for r in rows]

    async def set_rate_limit(self, project_id: str, per_minute: int | None) -> None:
        await self._count(
            f"UPDATE {self._s}.projects SET rate_limit_per_minute = %s WHERE id = %s",
            (per_minute, project_id),
        )

    async def get_project_settings(self, project_id: str) -> dict[str, Any]:
        row = await self._one(f"SELECT settings FROM {self._s}.projects WHERE id = %s", (project_id,))
        return dict(json.loads(row["settings"])) if row else {}

    async def update_project_settings(self, project_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT settings FROM {self._s}.projects WHERE id = %s FOR UPDATE", (project_id,)
            )
            row = await cur.fetchone()
            current = dict(json.loads(row["settings"])) if row else {}
            for key, value in changes.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            await conn.execute(
                f"UPDATE {self._s}.projects SET settings = %s WHERE id = %s",
                (json.dumps(current), project_id),
            )
        return current

    async def create_key(self, project_id: str, *, name: str | None = None, read_only: bool = False) -> str:
        key = new_api_key()
        await self._count(
            f"INSERT INTO {self._s}.api_keys (id, project_id, key_hash, prefix, name, read_only, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (_short_id("key"), project_id, hash_api_key(key), key[:10], name, read_only, time.time()),
        )
        return key

    async def lookup_key(self, key_hash: str) -> KeyContext | None:
        s = self._s
        row = await self._one(
            "SELECT k.*, p.org_id, p.name AS project_name, p.created_at AS project_created, "
            "p.rate_limit_per_minute, o.name AS org_name, o.created_at AS org_created "
            f"FROM {s}.api_keys k JOIN {s}.projects p ON p.id = k.project_id "
            f"JOIN {s}.orgs o ON o.id = p.org_id "
            "WHERE k.key_hash = %s AND k.revoked_at IS NULL",
            (key_hash,),
        )
        if row is None:
            return None
        project = Project(
            row["project_id"], row["org_id"], row["project_name"], row["project_created"],
            row["rate_limit_per_minute"],
        )  # fmt: skip
        return KeyContext(
            _key(row), project, Organization(row["org_id"], row["org_name"], row["org_created"])
        )

    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]:
        if project_id is None:
            rows = await self._all(f"SELECT * FROM {self._s}.api_keys ORDER BY created_at")
        else:
            rows = await self._all(
                f"SELECT * FROM {self._s}.api_keys WHERE project_id = %s ORDER BY created_at", (project_id,)
            )
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str) -> bool:
        return (
            await self._count(
                f"UPDATE {self._s}.api_keys SET revoked_at = %s "
                "WHERE (id = %s OR prefix = %s) AND revoked_at IS NULL",
                (time.time(), key_id, key_id),
            )
            > 0
        )

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
        s = self._s
        now = time.time()
        job_id = str(uuid.uuid4())
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                f"INSERT INTO {s}.jobs (id, project_id, kind, status, payload, attempts, run_after, "
                "created_at, updated_at, started_at, claimed_by, lease_expires_at, idempotency_key, "
                "request_hash) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (project_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
                "RETURNING *",
                (
                    job_id, project_id, kind, "RUNNING" if claim_as else "PENDING", json.dumps(payload),
                    1 if claim_as else 0, run_after if run_after is not None else now, now, now,
                    now if claim_as else None, claim_as, now + lease_seconds if claim_as else None,
                    idempotency_key, request_hash,
                ),
            )  # fmt: skip
            row = await cur.fetchone()
            if row is not None:
                return Enqueued(_job(row), created=True)
            cur = await conn.execute(
                f"SELECT * FROM {s}.jobs WHERE project_id = %s AND idempotency_key = %s",
                (project_id, idempotency_key),
            )
            row = await cur.fetchone()
        assert row is not None
        if request_hash is not None and row["request_hash"] != request_hash:
            raise ConflictError(
                "Idempotency-Key was already used with a different request",
                details={"field": "Idempotency-Key", "event_id": row["id"]},
            )
        return Enqueued(_job(row), created=False)

    async def get_job(self, project_id: str, job_id: str) -> Job | None:
        row = await self._one(
            f"SELECT * FROM {self._s}.jobs WHERE id = %s AND project_id = %s", (job_id, project_id)
        )
        return _job(row) if row else None

    async def list_jobs(
        self, project_id: str, *, kind: JobKind, status: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        where = "project_id = %s AND kind = %s" + (" AND status = %s" if status else "")
        args: list[Any] = [project_id, kind] + ([status] if status else [])
        total = await self._one(f"SELECT count(*) AS n FROM {self._s}.jobs WHERE {where}", args)
        rows = await self._all(
            f"SELECT * FROM {self._s}.jobs WHERE {where} ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
            [*args, limit, offset],
        )
        return [_job(r) for r in rows], int(total["n"] if total else 0)

    async def claim(
        self, worker_id: str, *, kinds: tuple[JobKind, ...], lease_seconds: float, max_attempts: int
    ) -> Job | None:
        s = self._s
        kind_list = list(kinds)
        async with self._conn() as conn, conn.transaction():
            # Jobs whose worker died too often end FAILED rather than crash-looping.
            await conn.execute(
                f"UPDATE {s}.jobs SET status = 'FAILED', error = %s, completed_at = {_NOW}, "
                f"updated_at = {_NOW}, claimed_by = NULL WHERE id IN (SELECT id FROM {s}.jobs "
                f"WHERE status = 'RUNNING' AND lease_expires_at <= {_NOW} AND attempts >= %s "
                "AND kind = ANY(%s) FOR UPDATE SKIP LOCKED)",
                (f"abandoned: the worker was lost {max_attempts} times", max_attempts, kind_list),
            )
            cur = await conn.execute(
                f"UPDATE {s}.jobs SET status = 'RUNNING', claimed_by = %s, "
                f"lease_expires_at = {_NOW} + %s, attempts = attempts + 1, "
                f"started_at = COALESCE(started_at, {_NOW}), updated_at = {_NOW} "
                f"WHERE id = (SELECT id FROM {s}.jobs WHERE kind = ANY(%s) AND ("
                f"(status = 'PENDING' AND run_after <= {_NOW}) OR "
                f"(status = 'RUNNING' AND lease_expires_at <= {_NOW})) "
                "ORDER BY run_after, created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *",
                (worker_id, lease_seconds, kind_list),
            )
            row = await cur.fetchone()
        return _job(row) if row else None

    async def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float) -> bool:
        return (
            await self._count(
                f"UPDATE {self._s}.jobs SET lease_expires_at = {_NOW} + %s, updated_at = {_NOW} "
                "WHERE id = %s AND claimed_by = %s AND status = 'RUNNING'",
                (lease_seconds, job_id, worker_id),
            )
            == 1
        )

    async def complete(self, job_id: str, worker_id: str, results: list[Any]) -> bool:
        return (
            await self._count(
                f"UPDATE {self._s}.jobs SET status = 'SUCCEEDED', results = %s, error = NULL, "
                f"completed_at = {_NOW}, updated_at = {_NOW}, lease_expires_at = NULL "
                "WHERE id = %s AND claimed_by = %s AND status = 'RUNNING'",
                (json.dumps(results), job_id, worker_id),
            )
            == 1
        )

    async def fail(self, job_id: str, worker_id: str, error: str, *, retry_at: float | None = None) -> bool:
        if retry_at is not None:
            sql = (
                f"UPDATE {self._s}.jobs SET status = 'PENDING', error = %s, run_after = %s, "
                f"updated_at = {_NOW}, claimed_by = NULL, lease_expires_at = NULL "
                "WHERE id = %s AND claimed_by = %s AND status = 'RUNNING'"
            )
            params: tuple[Any, ...] = (error, retry_at, job_id, worker_id)
        else:
            sql = (
                f"UPDATE {self._s}.jobs SET status = 'FAILED', error = %s, completed_at = {_NOW}, "
                f"updated_at = {_NOW}, lease_expires_at = NULL "
                "WHERE id = %s AND claimed_by = %s AND status = 'RUNNING'"
            )
            params = (error, job_id, worker_id)
        return await self._count(sql, params) == 1

    # -- entities -------------------------------------------------------------------------------
    async def touch_entities(self, project_id: str, ids: dict[str, str]) -> None:
        pairs = sorted((_ENTITY_FIELDS[k], v) for k, v in ids.items() if k in _ENTITY_FIELDS and v)
        if not pairs:
            return
        now = time.time()
        async with self._conn() as conn, conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {self._s}.entities (project_id, type, name, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (project_id, type, name) DO UPDATE SET updated_at = excluded.updated_at",
                [(project_id, t, n, now, now) for t, n in pairs],
            )

    async def list_entities(self, project_id: str) -> list[Entity]:
        rows = await self._all(
            f"SELECT * FROM {self._s}.entities WHERE project_id = %s ORDER BY type, name", (project_id,)
        )
        return [
            Entity(r["id"], r["project_id"], r["type"], r["name"], r["created_at"], r["updated_at"])
            for r in rows
        ]

    async def delete_entity(self, project_id: str, type_: str, name: str) -> bool:
        return (
            await self._count(
                f"DELETE FROM {self._s}.entities WHERE project_id = %s AND type = %s AND name = %s",
                (project_id, type_, name),
            )
            > 0
        )

    # -- webhooks -------------------------------------------------------------------------------
    async def create_webhook(self, project_id: str, name: str, url: str, event_types: list[str]) -> Webhook:
        now = time.time()
        row = await self._one(
            f"INSERT INTO {self._s}.webhooks (project_id, name, url, secret, event_types, is_active, "
            "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, true, %s, %s) RETURNING *",
            (project_id, name, url, "whsec_" + secrets.token_hex(24), json.dumps(event_types), now, now),
        )
        assert row is not None
        return _webhook(row)

    async def list_webhooks(self, project_id: str) -> list[Webhook]:
        rows = await self._all(
            f"SELECT * FROM {self._s}.webhooks WHERE project_id = %s ORDER BY id", (project_id,)
        )
        return [_webhook(r) for r in rows]

    async def get_webhook(self, project_id: str, webhook_id: int) -> Webhook | None:
        row = await self._one(
            f"SELECT * FROM {self._s}.webhooks WHERE id = %s AND project_id = %s", (webhook_id, project_id)
        )
        return _webhook(row) if row else None

    async def update_webhook(
        self, project_id: str, webhook_id: int, changes: dict[str, Any]
    ) -> Webhook | None:
        allowed = ("name", "url", "event_types", "is_active")
        sets = {k: changes[k] for k in allowed if changes.get(k) is not None}
        if "event_types" in sets:
            sets["event_types"] = json.dumps(sets["event_types"])
        if "is_active" in sets:
            sets["is_active"] = bool(sets["is_active"])
        if sets:
            assignments = ", ".join(f"{k} = %s" for k in sets)  # keys from the fixed list above
            await self._count(
                f"UPDATE {self._s}.webhooks SET {assignments}, updated_at = %s "
                "WHERE id = %s AND project_id = %s",
                (*sets.values(), time.time(), webhook_id, project_id),
            )
        return await self.get_webhook(project_id, webhook_id)

    async def delete_webhook(self, project_id: str, webhook_id: int) -> bool:
        return (
            await self._count(
                f"DELETE FROM {self._s}.webhooks WHERE id = %s AND project_id = %s", (webhook_id, project_id)
            )
            > 0
        )

    async def log_delivery(self, delivery: Delivery) -> None:
        await self._count(
            f"INSERT INTO {self._s}.webhook_deliveries (webhook_id, job_id, attempt, status_code, error, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s)",
            (delivery.webhook_id, delivery.job_id, delivery.attempt, delivery.status_code, delivery.error,
             delivery.created_at),
        )  # fmt: skip

    async def list_deliveries(self, webhook_id: int) -> list[Delivery]:
        rows = await self._all(
            f"SELECT * FROM {self._s}.webhook_deliveries WHERE webhook_id = %s ORDER BY id", (webhook_id,)
        )
        return [
            Delivery(
                r["webhook_id"], r["job_id"], r["attempt"], r["status_code"], r["error"], r["created_at"]
            )
            for r in rows
        ]

    # -- feedback and exports ------------------------------------------------------------------
    async def add_feedback(
        self, project_id: str, memory_id: str, feedback: str | None, reason: str | None
    ) -> dict[str, Any]:
        feedback_id = str(uuid.uuid4())
        await self._count(
            f"INSERT INTO {self._s}.feedback VALUES (%s, %s, %s, %s, %s, %s)",
            (feedback_id, project_id, memory_id, feedback, reason, time.time()),
        )
        return {"id": feedback_id, "memory_id": memory_id, "feedback": feedback, "feedback_reason": reason}

    async def create_export(
        self, project_id: str, schema: Any, filters: dict[str, Any], result: Any
    ) -> Export:
        export = Export(str(uuid.uuid4()), project_id, "COMPLETED", schema, filters, result, time.time())
        await self._count(
            f"INSERT INTO {self._s}.exports VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (export.id, project_id, export.status, json.dumps(schema), json.dumps(filters),
             json.dumps(result), export.created_at),
        )  # fmt: skip
        return export

    async def get_export(self, project_id: str, export_id: str | None) -> Export | None:
        if export_id is None:
            row = await self._one(
                f"SELECT * FROM {self._s}.exports WHERE project_id = %s ORDER BY created_at DESC LIMIT 1",
                (project_id,),
            )
        else:
            row = await self._one(
                f"SELECT * FROM {self._s}.exports WHERE id = %s AND project_id = %s", (export_id, project_id)
            )
        if row is None:
            return None
        return Export(
            row["id"], row["project_id"], row["status"], _loads(row["schema"]), json.loads(row["filters"]),
            _loads(row["result"]), row["created_at"],
        )  # fmt: skip
