"""Server state behind ``engram serve``: organizations, projects, API keys, durable jobs, webhooks.

Memories themselves are never kept here: the server stores them through :class:`engram.AsyncMemory`.
:class:`ServiceState` is the interface a backend implements (the SQL one, for SQLite and PostgreSQL,
is :mod:`engram.stores.sql.service`; backends register under ``engram.service_states``); everything
is async so that a network database fits the same seam. Times are UTC epoch seconds (``float``) in the
records and ISO 8601 in the HTTP API.
"""

from __future__ import annotations

import hashlib
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

JobStatus = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]
JobKind = Literal["ADD", "WEBHOOK", "PROFILE"]
ENTITY_TYPES: tuple[str, ...] = ("user", "agent", "app", "run")
WEBHOOK_EVENT_TYPES: tuple[str, ...] = ("memory_add", "memory_update", "memory_delete")
KEY_PREFIX = "eg-"


def new_api_key() -> str:
    """A fresh high-entropy API key (shown once, stored only as its hash)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The sha256 hex digest under which a key is stored and looked up."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class Organization:
    id: str
    name: str
    created_at: float


@dataclass(slots=True)
class Project:
    id: str
    org_id: str
    name: str
    created_at: float
    rate_limit_per_minute: int | None = None  # None: the server's default


@dataclass(slots=True)
class ApiKey:
    id: str
    project_id: str
    prefix: str  # the first characters of the key, to recognise it in listings
    name: str | None
    read_only: bool
    created_at: float
    revoked_at: float | None = None


@dataclass(slots=True)
class KeyContext:
    """What an authenticated request acts as."""

    key: ApiKey
    project: Project
    org: Organization


@dataclass(slots=True)
class Job:
    """A durable unit of work: an async add (an "event" in the API) or a webhook delivery."""

    id: str
    project_id: str
    kind: JobKind
    status: JobStatus
    payload: dict[str, Any]
    created_at: float
    updated_at: float
    results: list[Any] | None = None
    error: str | None = None
    attempts: int = 0
    run_after: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    claimed_by: str | None = None
    lease_expires_at: float | None = None
    idempotency_key: str | None = None


@dataclass(slots=True)
class Webhook:
    id: int
    project_id: str
    name: str
    url: str
    secret: str
    event_types: list[str]
    is_active: bool
    created_at: float
    updated_at: float


@dataclass(slots=True)
class Entity:
    id: int
    project_id: str
    type: str
    name: str
    created_at: float
    updated_at: float


@dataclass(slots=True)
class Export:
    id: str
    project_id: str
    status: str
    schema: Any
    filters: dict[str, Any]
    result: Any
    created_at: float


@dataclass(slots=True)
class Enqueued:
    job: Job
    created: bool  # False when the idempotency key matched an earlier request


@dataclass(slots=True)
class Delivery:
    webhook_id: int
    job_id: str
    attempt: int
    status_code: int | None
    error: str | None
    created_at: float
    extra: dict[str, Any] = field(default_factory=dict)


class ServiceState(ABC):
    """Everything the server persists besides memories. Implementations must be process-safe."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema (numbered migrations)."""

    @abstractmethod
    async def close(self) -> None: ...

    # -- tenancy -------------------------------------------------------------------------------
    @abstractmethod
    async def ensure_org(self, name: str) -> Organization:
        """The organization named ``name``, created if missing."""

    @abstractmethod
    async def ensure_project(self, org_id: str, name: str) -> Project:
        """The project ``name`` of an organization, created if missing."""

    @abstractmethod
    async def list_projects(self) -> list[tuple[Organization, Project]]: ...

    async def delete_project(self, project_id: str) -> bool:
        """Delete a project with its keys, jobs, webhooks, entities, feedback and exports (one
        transaction); False when it did not exist. Its memories are the engine's to delete."""
        from engram.errors import ConfigError

        raise ConfigError(f"{type(self).__name__} cannot delete projects")

    @abstractmethod
    async def set_rate_limit(self, project_id: str, per_minute: int | None) -> None: ...

    @abstractmethod
    async def get_project_settings(self, project_id: str) -> dict[str, Any]:
        """Per-project settings (``custom_instructions``, ``custom_categories``...), ``{}`` if none."""

    @abstractmethod
    async def update_project_settings(self, project_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into the settings (a ``None`` value removes a key); returns the result."""

    @abstractmethod
    async def create_key(self, project_id: str, *, name: str | None = None, read_only: bool = False) -> str:
        """Create an API key and return it in clear text: the only time it is ever shown."""

    @abstractmethod
    async def lookup_key(self, key_hash: str) -> KeyContext | None:
        """The live (unrevoked) key with this hash, with its project and organization."""

    @abstractmethod
    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]: ...

    @abstractmethod
    async def revoke_key(self, key_id: str) -> bool:
        """Revoke by id (or by the key's prefix); False when nothing live matched."""

    # -- durable jobs ----------------------------------------------------------------------------
    @abstractmethod
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
        """Persist a job. A known ``idempotency_key`` returns the earlier job (``created=False``), or
        raises :class:`~engram.errors.ConflictError` when ``request_hash`` differs. ``claim_as``
        inserts it already claimed by that worker (for work the request runs itself)."""

    @abstractmethod
    async def get_job(self, project_id: str, job_id: str) -> Job | None: ...

    @abstractmethod
    async def list_jobs(
        self, project_id: str, *, kind: JobKind, status: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        """Newest first, with the total count."""

    @abstractmethod
    async def claim(
        self, worker_id: str, *, kinds: tuple[JobKind, ...], lease_seconds: float, max_attempts: int
    ) -> Job | None:
        """Atomically take the oldest runnable job: PENDING and due, or RUNNING with an expired lease
        (its worker died). An expired job already tried ``max_attempts`` times ends FAILED instead."""

    @abstractmethod
    async def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False when this worker no longer holds the job."""

    @abstractmethod
    async def complete(self, job_id: str, worker_id: str, results: list[Any]) -> bool:
        """Mark SUCCEEDED, only if ``worker_id`` still holds the claim: a job completes exactly once."""

    @abstractmethod
    async def fail(self, job_id: str, worker_id: str, error: str, *, retry_at: float | None = None) -> bool:
        """FAILED with ``error``, or back to PENDING until ``retry_at``; guarded by the claim."""

    # -- entities (who has memories) ------------------------------------------------------------
    async def take_token(self, project_id: str, per_minute: int) -> float | None:
        """Take one request from the project's rate-limit bucket shared by every process: 0 when it
        may go on, else the seconds to wait. ``None``: this backend keeps no shared buckets, so each
        server process limits on its own (the embedded SQLite state)."""
        return None

    @abstractmethod
    async def prune(self, max_age_seconds: float) -> int:
        """Delete finished jobs (their idempotency keys with them) and webhook deliveries older than
        ``max_age_seconds``; pending and running jobs are kept. Returns the number of rows deleted."""

    @abstractmethod
    async def touch_entities(self, project_id: str, ids: dict[str, str]) -> None:
        """Record the scope ids of a write (``{"user_id": "alice", ...}``)."""

    @abstractmethod
    async def list_entities(self, project_id: str) -> list[Entity]: ...

    @abstractmethod
    async def delete_entity(self, project_id: str, type_: str, name: str) -> bool: ...

    # -- webhooks -------------------------------------------------------------------------------
    @abstractmethod
    async def create_webhook(
        self, project_id: str, name: str, url: str, event_types: list[str]
    ) -> Webhook: ...

    @abstractmethod
    async def list_webhooks(self, project_id: str) -> list[Webhook]: ...

    @abstractmethod
    async def get_webhook(self, project_id: str, webhook_id: int) -> Webhook | None: ...

    @abstractmethod
    async def update_webhook(
        self, project_id: str, webhook_id: int, changes: dict[str, Any]
    ) -> Webhook | None:
        """Apply name, url, event_types and/or is_active; None when absent."""

    @abstractmethod
    async def delete_webhook(self, project_id: str, webhook_id: int) -> bool: ...

    @abstractmethod
    async def log_delivery(self, delivery: Delivery) -> None: ...

    @abstractmethod
    async def list_deliveries(self, webhook_id: int) -> list[Delivery]: ...

    # -- feed cursors (how far the webhook relay has read the store's change feed) ---------------
    @abstractmethod
    async def get_cursor(self, name: str) -> str | None:
        """The stored position of the reader ``name``; None before its first :meth:`move_cursor`."""

    @abstractmethod
    async def move_cursor(self, name: str, old: str | None, new: str) -> bool:
        """Set the reader's position to ``new`` only if it still is ``old`` (None: not yet set);
        False when another process moved it first (compare-and-set: a cursor never goes back)."""

    # -- feedback and exports --------------------------------------------------------------------
    @abstractmethod
    async def add_feedback(
        self, project_id: str, memory_id: str, feedback: str | None, reason: str | None
    ) -> dict[str, Any]: ...

    @abstractmethod
    async def create_export(
        self, project_id: str, schema: Any, filters: dict[str, Any], result: Any
    ) -> Export: ...

    @abstractmethod
    async def get_export(self, project_id: str, export_id: str | None) -> Export | None:
        """That export, or the project's latest when ``export_id`` is None."""
