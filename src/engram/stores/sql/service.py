"""Server state (:class:`engram.service.ServiceState`) implemented once for every SQL dialect.

The rules live here: the job queue's states (PENDING -> RUNNING -> SUCCEEDED / FAILED, back to
PENDING for a retry), its idempotency rule (a known key returns the earlier job, or a conflict when the
request differs), leases (a job whose worker died is claimed again; one lost too often ends FAILED),
and claim-guarded completion (a job completes exactly once). A dialect runs the SQL through
:class:`~engram.stores.sql.db.Db`: in one call or in one transaction.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from engram.errors import ConflictError
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
from engram.stores.sql.db import Db

T = TypeVar("T")
_ENTITY_FIELDS = {"user_id": "user", "agent_id": "agent", "app_id": "app", "run_id": "run"}
_RUNNABLE = (
    "((status = 'PENDING' AND run_after <= {now}) OR (status = 'RUNNING' AND lease_expires_at <= {now}))"
)
_HELD = "WHERE id = %s AND claimed_by = %s AND status = 'RUNNING'"
_KEY_CONTEXT = (
    "SELECT k.*, p.org_id, p.name AS project_name, p.created_at AS project_created, "
    "p.rate_limit_per_minute, o.name AS org_name, o.created_at AS org_created "
    "FROM {s}.api_keys k JOIN {s}.projects p ON p.id = k.project_id JOIN {s}.orgs o ON o.id = p.org_id "
    "WHERE k.key_hash = %s AND k.revoked_at IS NULL"
)


_START_CURSOR = (
    "INSERT INTO {s}.feed_cursors (name, position, updated_at) VALUES (%s, %s, {now}) "
    "ON CONFLICT (name) DO NOTHING"
)
_MOVE_CURSOR = (
    "UPDATE {s}.feed_cursors SET position = %s, updated_at = {now} WHERE name = %s AND position = %s"
)
_PROJECT_TABLES = ("api_keys", "jobs", "entities", "webhooks", "feedback", "exports")
# What deleting a project runs, in order; each statement takes the project id once.
_DELETE_PROJECT = [
    "DELETE FROM {s}.webhook_deliveries WHERE webhook_id IN "
    "(SELECT id FROM {s}.webhooks WHERE project_id = %s)",
    *(f"DELETE FROM {{s}}.{table} WHERE project_id = %s" for table in _PROJECT_TABLES),
    "DELETE FROM {s}.projects WHERE id = %s",
]


def _short_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _loads(value: str | None) -> Any:
    return json.loads(value) if value is not None else None


def _job(r: Any) -> Job:
    return Job(
        id=r["id"], project_id=r["project_id"], kind=r["kind"], status=r["status"],
        payload=json.loads(r["payload"]), created_at=r["created_at"], updated_at=r["updated_at"],
        results=_loads(r["results"]), error=r["error"], attempts=r["attempts"], run_after=r["run_after"],
        started_at=r["started_at"], completed_at=r["completed_at"], claimed_by=r["claimed_by"],
        lease_expires_at=r["lease_expires_at"], idempotency_key=r["idempotency_key"],
    )  # fmt: skip


def _webhook(r: Any) -> Webhook:
    return Webhook(
        id=r["id"], project_id=r["project_id"], name=r["name"], url=r["url"], secret=r["secret"],
        event_types=json.loads(r["event_types"]), is_active=bool(r["is_active"]),
        created_at=r["created_at"], updated_at=r["updated_at"],
    )  # fmt: skip


def _key(r: Any) -> ApiKey:
    return ApiKey(
        id=r["id"], project_id=r["project_id"], prefix=r["prefix"], name=r["name"],
        read_only=bool(r["read_only"]), created_at=r["created_at"], revoked_at=r["revoked_at"],
    )  # fmt: skip


def _project(r: Any) -> Project:
    return Project(r["id"], r["org_id"], r["name"], r["created_at"], r["rate_limit_per_minute"])


async def _one(db: Db, sql: str, params: Any = ()) -> Any:
    rows = await db.rows(sql, params)
    return rows[0] if rows else None


class SQLServiceState(ServiceState):
    """The server-state rules over a dialect's :class:`Db`; a dialect implements the hooks."""

    @abstractmethod
    async def _run(self, fn: Callable[[Db], Awaitable[T]]) -> T:
        """Run ``fn`` on a connection (each statement commits on its own)."""

    @abstractmethod
    async def _transaction(self, fn: Callable[[Db], Awaitable[T]]) -> T:
        """Run ``fn`` in one write transaction."""

    async def _rows(self, sql: str, params: Any = ()) -> list[Any]:
        return await self._run(lambda db: db.rows(sql, params))

    async def _row(self, sql: str, params: Any = ()) -> Any:
        return await self._run(lambda db: _one(db, sql, params))

    async def _count(self, sql: str, params: Any = ()) -> int:
        return await self._run(lambda db: db.execute(sql, params))

    # -- tenancy -----------------------------------------------------------------------------------
    async def ensure_org(self, name: str) -> Organization:
        async def go(db: Db) -> Organization:
            await db.execute(
                "INSERT INTO {s}.orgs VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (_short_id("org"), name, time.time()),
            )
            row = await _one(db, "SELECT * FROM {s}.orgs WHERE name = %s", (name,))
            return Organization(row["id"], row["name"], row["created_at"])

        return await self._run(go)

    async def ensure_project(self, org_id: str, name: str) -> Project:
        async def go(db: Db) -> Project:
            await db.execute(
                "INSERT INTO {s}.projects (id, org_id, name, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (org_id, name) DO NOTHING",
                (_short_id("proj"), org_id, name, time.time()),
            )
            return _project(
                await _one(db, "SELECT * FROM {s}.projects WHERE org_id = %s AND name = %s", (org_id, name))
            )

        return await self._run(go)

    async def list_projects(self) -> list[tuple[Organization, Project]]:
        rows = await self._rows(
            "SELECT p.*, o.name AS org_name, o.created_at AS org_created FROM {s}.projects p "
            "JOIN {s}.orgs o ON o.id = p.org_id ORDER BY o.name, p.name"
        )
        return [(Organization(r["org_id"], r["org_name"], r["org_created"]), _project(r)) for r in rows]

    async def delete_project(self, project_id: str) -> bool:
        async def tx(db: Db) -> int:
            count = 0
            for sql in _DELETE_PROJECT:
                count = await db.execute(sql, (project_id,))
            return count

        return await self._transaction(tx) > 0

    async def set_rate_limit(self, project_id: str, per_minute: int | None) -> None:
        await self._count(
            "UPDATE {s}.projects SET rate_limit_per_minute = %s WHERE id = %s", (per_minute, project_id)
        )

    async def get_project_settings(self, project_id: str) -> dict[str, Any]:
        row = await self._row("SELECT settings FROM {s}.projects WHERE id = %s", (project_id,))
        return dict(json.loads(row["settings"])) if row else {}

    async def update_project_settings(self, project_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        async def tx(db: Db) -> dict[str, Any]:
            row = await _one(db, "SELECT settings FROM {s}.projects WHERE id = %s{for_update}", (project_id,))
            current = dict(json.loads(row["settings"])) if row else {}
            for key, value in changes.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            await db.execute(
                "UPDATE {s}.projects SET settings = %s WHERE id = %s", (json.dumps(current), project_id)
            )
            return current

        return await self._transaction(tx)

    async def create_key(self, project_id: str, *, name: str | None = None, read_only: bool = False) -> str:
        key = new_api_key()
        await self._count(
            "INSERT INTO {s}.api_keys (id, project_id, key_hash, prefix, name, read_only, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (_short_id("key"), project_id, hash_api_key(key), key[:10], name, read_only, time.time()),
        )
        return key

    async def lookup_key(self, key_hash: str) -> KeyContext | None:
        row = await self._row(_KEY_CONTEXT, (key_hash,))
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
            rows = await self._rows("SELECT * FROM {s}.api_keys ORDER BY created_at")
        else:
            rows = await self._rows(
                "SELECT * FROM {s}.api_keys WHERE project_id = %s ORDER BY created_at", (project_id,)
            )
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str) -> bool:
        revoked = await self._count(
            "UPDATE {s}.api_keys SET revoked_at = %s WHERE (id = %s OR prefix = %s) AND revoked_at IS NULL",
            (time.time(), key_id, key_id),
        )
        return revoked > 0

    # -- the durable job queue ---------------------------------------------------------------------
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
        now = time.time()
        row = (
            str(uuid.uuid4()), project_id, kind, "RUNNING" if claim_as else "PENDING", json.dumps(payload),
            1 if claim_as else 0, run_after if run_after is not None else now, now, now,
            now if claim_as else None, claim_as, now + lease_seconds if claim_as else None,
            idempotency_key, request_hash,
        )  # fmt: skip

        async def tx(db: Db) -> Any:
            inserted = await _one(
                db,
                "INSERT INTO {s}.jobs (id, project_id, kind, status, payload, attempts, run_after, "
                "created_at, updated_at, started_at, claimed_by, lease_expires_at, idempotency_key, "
                "request_hash) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (project_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
                "RETURNING *",
                row,
            )
            if inserted is not None:
                return inserted, True
            earlier = "SELECT * FROM {s}.jobs WHERE project_id = %s AND idempotency_key = %s"
            return await _one(db, earlier, (project_id, idempotency_key)), False

        found, created = await self._transaction(tx)
        if not created and request_hash is not None and found["request_hash"] != request_hash:
            raise ConflictError(
                "Idempotency-Key was already used with a different request",
                details={"field": "Idempotency-Key", "event_id": found["id"]},
            )
        return Enqueued(_job(found), created=created)

    async def get_job(self, project_id: str, job_id: str) -> Job | None:
        row = await self._row(
            "SELECT * FROM {s}.jobs WHERE id = %s AND project_id = %s", (job_id, project_id)
        )
        return _job(row) if row else None

    async def list_jobs(
        self, project_id: str, *, kind: JobKind, status: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        where = "project_id = %s AND kind = %s" + (" AND status = %s" if status else "")
        args: list[Any] = [project_id, kind] + ([status] if status else [])

        async def go(db: Db) -> tuple[list[Job], int]:
            total = await _one(db, f"SELECT count(*) AS n FROM {{s}}.jobs WHERE {where}", args)
            rows = await db.rows(
                f"SELECT * FROM {{s}}.jobs WHERE {where} ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
                [*args, limit, offset],
            )
            return [_job(r) for r in rows], int(total["n"])

        return await self._run(go)

    async def claim(
        self, worker_id: str, *, kinds: tuple[JobKind, ...], lease_seconds: float, max_attempts: int
    ) -> Job | None:
        of_kind = f"kind IN ({', '.join('%s' for _ in kinds)})"
        runnable = f"SELECT id FROM {{s}}.jobs WHERE {of_kind} AND {_RUNNABLE}"
        if not await self._row(runnable + " LIMIT 1", kinds):  # a cheap read first: idle polls lock nothing
            return None

        async def tx(db: Db) -> Any:
            # Jobs whose worker died too often end FAILED rather than crash-looping.
            await db.execute(
                "UPDATE {s}.jobs SET status = 'FAILED', error = %s, completed_at = {now}, "
                "updated_at = {now}, claimed_by = NULL WHERE id IN (SELECT id FROM {s}.jobs "
                "WHERE status = 'RUNNING' "
                f"AND lease_expires_at <= {{now}} AND attempts >= %s AND {of_kind}{{skip_locked}})",
                (f"abandoned: the worker was lost {max_attempts} times", max_attempts, *kinds),
            )
            return await _one(
                db,
                "UPDATE {s}.jobs SET status = 'RUNNING', claimed_by = %s, lease_expires_at = {now} + %s, "
                "attempts = attempts + 1, started_at = COALESCE(started_at, {now}), updated_at = {now} "
                f"WHERE id = ({runnable} ORDER BY run_after, created_at LIMIT 1{{skip_locked}}) RETURNING *",
                (worker_id, lease_seconds, *kinds),
            )

        row = await self._transaction(tx)
        return _job(row) if row else None

    async def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float) -> bool:
        held = await self._count(
            "UPDATE {s}.jobs SET lease_expires_at = {now} + %s, updated_at = {now} " + _HELD,
            (lease_seconds, job_id, worker_id),
        )
        return held == 1

    async def complete(self, job_id: str, worker_id: str, results: list[Any]) -> bool:
        held = await self._count(
            "UPDATE {s}.jobs SET status = 'SUCCEEDED', results = %s, error = NULL, completed_at = {now}, "
            "updated_at = {now}, lease_expires_at = NULL " + _HELD,
            (json.dumps(results), job_id, worker_id),
        )
        return held == 1

    async def fail(self, job_id: str, worker_id: str, error: str, *, retry_at: float | None = None) -> bool:
        if retry_at is not None:  # back to PENDING until retry_at
            sql = (
                "UPDATE {s}.jobs SET status = 'PENDING', error = %s, run_after = %s, updated_at = {now}, "
                "claimed_by = NULL, lease_expires_at = NULL " + _HELD
            )
            params: tuple[Any, ...] = (error, retry_at, job_id, worker_id)
        else:
            sql = (
                "UPDATE {s}.jobs SET status = 'FAILED', error = %s, completed_at = {now}, "
                "updated_at = {now}, lease_expires_at = NULL " + _HELD
            )
            params = (error, job_id, worker_id)
        return await self._count(sql, params) == 1

    async def prune(self, max_age_seconds: float) -> int:
        async def tx(db: Db) -> int:
            jobs = await db.execute(
                "DELETE FROM {s}.jobs WHERE status IN ('SUCCEEDED', 'FAILED') AND completed_at < {now} - %s",
                (max_age_seconds,),
            )
            deliveries = await db.execute(
                "DELETE FROM {s}.webhook_deliveries WHERE created_at < {now} - %s", (max_age_seconds,)
            )
            return jobs + deliveries

        return await self._transaction(tx)

    # -- feed cursors ------------------------------------------------------------------------------
    async def get_cursor(self, name: str) -> str | None:
        row = await self._row("SELECT position FROM {s}.feed_cursors WHERE name = %s", (name,))
        return None if row is None else str(row["position"])

    async def move_cursor(self, name: str, old: str | None, new: str) -> bool:
        if old is None:
            return await self._count(_START_CURSOR, (name, new)) == 1
        return await self._count(_MOVE_CURSOR, (new, name, old)) == 1

    # -- entities ----------------------------------------------------------------------------------
    async def touch_entities(self, project_id: str, ids: dict[str, str]) -> None:
        pairs = sorted((_ENTITY_FIELDS[k], v) for k, v in ids.items() if k in _ENTITY_FIELDS and v)
        if not pairs:
            return
        now = time.time()
        await self._run(
            lambda db: db.many(
                "INSERT INTO {s}.entities (project_id, type, name, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (project_id, type, name) DO UPDATE SET updated_at = excluded.updated_at",
                [(project_id, t, n, now, now) for t, n in pairs],
            )
        )

    async def list_entities(self, project_id: str) -> list[Entity]:
        rows = await self._rows(
            "SELECT * FROM {s}.entities WHERE project_id = %s ORDER BY type, name", (project_id,)
        )
        return [
            Entity(r["id"], r["project_id"], r["type"], r["name"], r["created_at"], r["updated_at"])
            for r in rows
        ]

    async def delete_entity(self, project_id: str, type_: str, name: str) -> bool:
        deleted = await self._count(
            "DELETE FROM {s}.entities WHERE project_id = %s AND type = %s AND name = %s",
            (project_id, type_, name),
        )
        return deleted > 0

    # -- webhooks ----------------------------------------------------------------------------------
    async def create_webhook(self, project_id: str, name: str, url: str, event_types: list[str]) -> Webhook:
        now = time.time()
        row = await self._row(
            "INSERT INTO {s}.webhooks (project_id, name, url, secret, event_types, is_active, created_at, "
            "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
            (
                project_id,
                name,
                url,
                "whsec_" + secrets.token_hex(24),
                json.dumps(event_types),
                True,
                now,
                now,
            ),
        )
        return _webhook(row)

    async def list_webhooks(self, project_id: str) -> list[Webhook]:
        rows = await self._rows("SELECT * FROM {s}.webhooks WHERE project_id = %s ORDER BY id", (project_id,))
        return [_webhook(r) for r in rows]

    async def get_webhook(self, project_id: str, webhook_id: int) -> Webhook | None:
        row = await self._row(
            "SELECT * FROM {s}.webhooks WHERE id = %s AND project_id = %s", (webhook_id, project_id)
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
                f"UPDATE {{s}}.webhooks SET {assignments}, updated_at = %s WHERE id = %s AND project_id = %s",
                (*sets.values(), time.time(), webhook_id, project_id),
            )
        return await self.get_webhook(project_id, webhook_id)

    async def delete_webhook(self, project_id: str, webhook_id: int) -> bool:
        deleted = await self._count(
            "DELETE FROM {s}.webhooks WHERE id = %s AND project_id = %s", (webhook_id, project_id)
        )
        return deleted > 0

    async def log_delivery(self, delivery: Delivery) -> None:
        await self._count(
            "INSERT INTO {s}.webhook_deliveries (webhook_id, job_id, attempt, status_code, error, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s)",
            (delivery.webhook_id, delivery.job_id, delivery.attempt, delivery.status_code, delivery.error,
             delivery.created_at),
        )  # fmt: skip

    async def list_deliveries(self, webhook_id: int) -> list[Delivery]:
        rows = await self._rows(
            "SELECT * FROM {s}.webhook_deliveries WHERE webhook_id = %s ORDER BY id", (webhook_id,)
        )
        return [
            Delivery(
                r["webhook_id"], r["job_id"], r["attempt"], r["status_code"], r["error"], r["created_at"]
            )
            for r in rows
        ]

    # -- feedback and exports ----------------------------------------------------------------------
    async def add_feedback(
        self, project_id: str, memory_id: str, feedback: str | None, reason: str | None
    ) -> dict[str, Any]:
        feedback_id = str(uuid.uuid4())
        await self._count(
            "INSERT INTO {s}.feedback VALUES (%s, %s, %s, %s, %s, %s)",
            (feedback_id, project_id, memory_id, feedback, reason, time.time()),
        )
        return {"id": feedback_id, "memory_id": memory_id, "feedback": feedback, "feedback_reason": reason}

    async def create_export(
        self, project_id: str, schema: Any, filters: dict[str, Any], result: Any
    ) -> Export:
        export = Export(str(uuid.uuid4()), project_id, "COMPLETED", schema, filters, result, time.time())
        await self._count(
            "INSERT INTO {s}.exports VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (export.id, project_id, export.status, json.dumps(schema), json.dumps(filters),
             json.dumps(result), export.created_at),
        )  # fmt: skip
        return export

    async def get_export(self, project_id: str, export_id: str | None) -> Export | None:
        if export_id is None:
            sql = "SELECT * FROM {s}.exports WHERE project_id = %s ORDER BY created_at DESC LIMIT 1"
            row = await self._row(sql, (project_id,))
        else:
            sql = "SELECT * FROM {s}.exports WHERE id = %s AND project_id = %s"
            row = await self._row(sql, (export_id, project_id))
        if row is None:
            return None
        return Export(
            row["id"], row["project_id"], row["status"], _loads(row["schema"]), json.loads(row["filters"]),
            _loads(row["result"]), row["created_at"],
        )  # fmt: skip
