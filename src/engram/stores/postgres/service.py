"""The server state in PostgreSQL: the rules are in :class:`~engram.stores.sql.service.SQLServiceState`;
this module holds the schema and runs the SQL, for any number of server and worker processes on any
number of machines.

Workers claim jobs with ``SELECT ... FOR UPDATE SKIP LOCKED`` (no two take the same job, none waits
for another); leases are compared with the database's clock, so machines' clocks need not agree.
The pool, error translation and migration runner are the store's (:class:`PostgresPool`,
:func:`engram.stores.postgres.schema.migrate`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import Field

from engram.errors import MissingDependencyError
from engram.stores.postgres.connection import PostgresPool
from engram.stores.postgres.db import PostgresDb
from engram.stores.postgres.rows import PostgresConnectionSettings
from engram.stores.postgres.schema import migrate
from engram.stores.sql.db import Db
from engram.stores.sql.migrations import Migration
from engram.stores.sql.service import SQLServiceState

T = TypeVar("T")


def _m001_state(s: str) -> list[str]:
    return [
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
    ]


def _m002_rate_buckets(s: str) -> list[str]:
    return [
        f"""CREATE TABLE {s}.rate_buckets (project_id text PRIMARY KEY, tokens float8 NOT NULL,
                updated_at float8 NOT NULL, took boolean NOT NULL)""",
    ]


def _m003_feed_cursors(s: str) -> list[str]:
    return [
        f"""CREATE TABLE {s}.feed_cursors (name text PRIMARY KEY, position text NOT NULL,
                updated_at float8 NOT NULL)""",
    ]


MIGRATIONS: list[Migration] = [
    Migration(1, "tenancy, keys, jobs, entities, webhooks, feedback, exports", _m001_state),
    Migration(2, "per-project rate-limit buckets shared by every server process", _m002_rate_buckets),
    Migration(3, "change feed cursors of the webhook relay", _m003_feed_cursors),
]

_EPOCH = "extract(epoch FROM statement_timestamp())::float8"  # one instant for the whole upsert
_REFILLED = f"LEAST(%(cap)s, b.tokens + ({_EPOCH} - b.updated_at) * %(rate)s)"
_TAKE_TOKEN = f"""INSERT INTO {{s}}.rate_buckets AS b (project_id, tokens, updated_at, took)
    VALUES (%(p)s, %(cap)s - 1, {_EPOCH}, true)
    ON CONFLICT (project_id) DO UPDATE SET took = {_REFILLED} >= 1,
      tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END, updated_at = {_EPOCH}
    RETURNING tokens, took"""


class PostgresStateSettings(PostgresConnectionSettings):
    """Settings of the PostgreSQL server state (by default the store's database and schema)."""

    max_pool_size: int = Field(5, ge=1, description="connections at most per process")


class PostgresServiceState(PostgresPool, SQLServiceState):
    """Server state in PostgreSQL (the same database and schema as :class:`PostgresStore` by default).

    Configure with ``ENGRAM_SERVER_STATE_BACKEND=postgres`` and ``ENGRAM_SERVER_STATE_CONFIG=
    '{"url": "postgresql://..."}'`` (the URL defaults to ``$ENGRAM_DATABASE_URL``).
    """

    Settings = PostgresStateSettings
    _what = "server state"
    _settings_key = "state_config"

    async def _run(self, fn: Callable[[Db], Awaitable[T]]) -> T:
        async with self._conn() as conn:
            return await fn(PostgresDb(conn, self._s))

    async def _transaction(self, fn: Callable[[Db], Awaitable[T]]) -> T:
        async with self._conn() as conn, conn.transaction():
            return await fn(PostgresDb(conn, self._s))

    async def take_token(self, project_id: str, per_minute: int) -> float:
        """Take one request from the project's bucket, shared by every process: 0, or seconds to wait."""
        if per_minute <= 0:
            return 0.0
        rate = per_minute / 60.0
        async with self._conn() as conn:
            cur = await conn.execute(
                _TAKE_TOKEN.replace("{s}", self._s), {"p": project_id, "cap": float(per_minute), "rate": rate}
            )
            row = await cur.fetchone()
        assert row is not None
        return 0.0 if row["took"] else (1.0 - float(row["tokens"])) / rate

    async def open(self) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as e:
            raise MissingDependencyError(e.name or "psycopg", "postgres") from e
        async with self._guard():
            async with await psycopg.AsyncConnection.connect(self._url(), autocommit=True) as conn:
                await migrate(conn, self._s, "state", MIGRATIONS)
            self._pool_obj, _ = await self._open_pools("engram-state", vectors=False, row_factory=dict_row)

    async def close(self) -> None:
        await self._close_pools()
