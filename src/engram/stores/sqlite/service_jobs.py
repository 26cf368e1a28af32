"""The durable job queue of :class:`SQLiteServiceState`: enqueue (idempotent), claim with a lease,
heartbeat, complete and fail."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from engram.errors import ConflictError
from engram.service import Enqueued, Job, JobKind
from engram.stores.sqlite.service_connection import SQLiteStateConnection


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


class SQLiteJobQueue(SQLiteStateConnection):
    """Jobs in the ``jobs`` table; claims run in ``BEGIN IMMEDIATE`` so two workers never take one job."""

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

    async def prune(self, max_age_seconds: float) -> int:
        def go(conn: sqlite3.Connection) -> int:
            cutoff = time.time() - max_age_seconds

            def delete() -> int:
                jobs = conn.execute(
                    "DELETE FROM jobs WHERE status IN ('SUCCEEDED', 'FAILED') AND completed_at < ?", (cutoff,)
                ).rowcount
                return (
                    jobs
                    + conn.execute("DELETE FROM webhook_deliveries WHERE created_at < ?", (cutoff,)).rowcount
                )

            return self._tx(conn, delete)

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
