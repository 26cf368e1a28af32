"""Durable workers: run queued adds through the engine and deliver signed webhooks with retries.

A worker claims a job with a lease and keeps it alive with heartbeats. If its process dies, the lease
runs out and another worker claims the job again; completion is guarded by the claim, so a job ends
exactly once. Re-running an add that had already written is harmless: exact duplicates in a scope
are not stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from engram.errors import (
    ConfigError,
    EngramError,
    ExtractionError,
    InferenceUnavailableError,
    ValidationError,
)
from engram.memory import AsyncMemory
from engram.server.settings import ServerSettings
from engram.service import Delivery, Job, JobKind, ServiceState

logger = logging.getLogger("engram.server.worker")
_PERMANENT = (ValidationError, ConfigError, InferenceUnavailableError, ExtractionError)
_EVENT_TYPES = {"ADD": "memory_add", "UPDATE": "memory_update", "DELETE": "memory_delete"}
SIGNATURE_HEADER = "X-Engram-Signature"


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def namespace_for(project_id: str) -> str:
    """The engine namespace that holds one project's memories."""
    return project_id


def sign(secret: str, body: bytes) -> str:
    """The ``X-Engram-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


class Runner:
    """Runs jobs for one process: background loops, or one job inline for a synchronous add."""

    def __init__(self, engine: AsyncMemory, state: ServiceState, settings: ServerSettings) -> None:
        self.engine = engine
        self.state = state
        self.settings = settings
        self.wake = asyncio.Event()
        self._http: Any = None

    # -- loops ---------------------------------------------------------------------------------
    async def run_forever(
        self, stop: asyncio.Event, kinds: tuple[JobKind, ...] = ("ADD", "WEBHOOK", "PROFILE")
    ) -> None:
        worker_id = new_worker_id()
        while not stop.is_set():
            try:
                job = await self.state.claim(
                    worker_id,
                    kinds=kinds,
                    lease_seconds=self.settings.lease_seconds,
                    max_attempts=self.settings.job_max_attempts,
                )
            except EngramError as e:
                logger.warning("claim failed: %s", e)
                job = None
            if job is None:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self.settings.poll_interval)
                continue
            try:
                await self.process(job, worker_id)
            except asyncio.CancelledError:  # shutting down: hand the job back now, not after the lease
                with contextlib.suppress(Exception):
                    await self.state.fail(
                        job.id, worker_id, "interrupted: worker stopped", retry_at=time.time()
                    )
                raise
            except Exception:  # a bug must not kill the loop; the lease will expire and retry
                logger.exception("job %s crashed", job.id)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def process(self, job: Job, worker_id: str) -> None:
        if job.kind == "ADD":
            await self._run_add(job, worker_id)
        elif job.kind == "PROFILE":
            await self._run_profiles(job, worker_id)
        else:
            await self._deliver(job, worker_id)

    async def _heartbeat(self, job_id: str, worker_id: str) -> None:
        every = max(self.settings.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            if not await self.state.heartbeat(job_id, worker_id, self.settings.lease_seconds):
                return

    # -- adds -------------------------------------------------------------------------------------
    async def _run_add(self, job: Job, worker_id: str) -> None:
        beat = asyncio.create_task(self._heartbeat(job.id, worker_id))
        try:
            if self.settings.job_delay_ms:
                await asyncio.sleep(self.settings.job_delay_ms / 1000)
            kwargs = dict(job.payload["kwargs"])
            messages = kwargs.pop("messages")
            if kwargs.get("infer", True) and not kwargs.get("prompt"):
                kwargs["prompt"] = await self._project_instructions(job.project_id, kwargs)
            view = self.engine.namespace_view(namespace_for(job.project_id))
            result = await view.add(messages, **kwargs)
        except _PERMANENT as e:
            await self.state.fail(job.id, worker_id, f"{e.code}: {e.message}")
            return
        except Exception as e:
            error = f"{getattr(e, 'code', type(e).__name__)}: {e}"
            logger.warning("add job %s attempt %d failed: %s", job.id, job.attempts, error)
            retry_at = None
            if job.attempts < self.settings.job_max_attempts:
                retry_at = time.time() + min(2.0**job.attempts, 60.0)
            await self.state.fail(job.id, worker_id, error, retry_at=retry_at)
            return
        finally:
            beat.cancel()
        results = result.get("results", [])
        if await self.state.complete(job.id, worker_id, results):
            scope = {k: kwargs[k] for k in ("user_id", "agent_id", "app_id", "run_id") if kwargs.get(k)}
            await self.state.touch_entities(job.project_id, scope)
            await self.fire(job.project_id, [(r.get("event", ""), r) for r in results])

    async def _run_profiles(self, job: Job, worker_id: str) -> None:
        from engram.server.profile_jobs import run_profile_job

        beat = asyncio.create_task(self._heartbeat(job.id, worker_id))
        try:
            view = self.engine.namespace_view(namespace_for(job.project_id))
            results = await run_profile_job(view, self.state, job)
        except Exception as e:  # a store outage: retried like an add
            retry_at = time.time() + 1.0 if job.attempts < self.settings.job_max_attempts else None
            await self.state.fail(job.id, worker_id, f"{type(e).__name__}: {e}", retry_at=retry_at)
            return
        finally:
            beat.cancel()
        await self.state.complete(job.id, worker_id, results)

    async def _project_instructions(self, project_id: str, kwargs: dict[str, Any]) -> str | None:
        """The project's custom instructions (its agent ones for agent-only scopes), if any."""
        settings = await self.state.get_project_settings(project_id)
        if kwargs.get("agent_id") and not kwargs.get("user_id") and settings.get("agent_custom_instructions"):
            return str(settings["agent_custom_instructions"])
        value = settings.get("custom_instructions")
        return str(value) if value else None

    # -- webhooks ---------------------------------------------------------------------------------
    async def fire(self, project_id: str, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue one signed delivery per subscribed webhook for each ADD/UPDATE/DELETE."""
        relevant = [(_EVENT_TYPES[event], item) for event, item in changes if event in _EVENT_TYPES]
        if not relevant:
            return
        hooks = [h for h in await self.state.list_webhooks(project_id) if h.is_active]
        now = time.time()
        for event_type, item in relevant:
            for hook in hooks:
                if hook.event_types and event_type not in hook.event_types:
                    continue
                body = {
                    "event_details": {
                        "id": item.get("id"),
                        "data": {"memory": item.get("memory")},
                        "event": item.get("event"),
                    },
                    "event_type": event_type,
                    "project_id": project_id,
                    "webhook_id": hook.id,
                    "timestamp": iso(now),
                }
                await self.state.enqueue(project_id, "WEBHOOK", {"webhook_id": hook.id, "body": body})
        self.wake.set()

    async def _deliver(self, job: Job, worker_id: str) -> None:
        import httpx

        hook = await self.state.get_webhook(job.project_id, int(job.payload["webhook_id"]))
        if hook is None or not hook.is_active:
            await self.state.complete(job.id, worker_id, [{"skipped": "webhook deleted or inactive"}])
            return
        body = json.dumps(job.payload["body"], separators=(",", ":"), sort_keys=True).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, body),
            "X-Engram-Event": str(job.payload["body"].get("event_type")),
            "X-Engram-Delivery": job.id,
            "User-Agent": "engram-webhooks",
        }
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.webhook_timeout)
        status: int | None = None
        error: str | None = None
        try:
            response = await self._http.post(hook.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        await self.state.log_delivery(Delivery(hook.id, job.id, job.attempts, status, error, time.time()))
        if error is None:
            await self.state.complete(job.id, worker_id, [{"status_code": status}])
            return
        retry_at = None
        if job.attempts < self.settings.webhook_max_attempts:
            delay = min(
                self.settings.webhook_backoff_seconds * 2 ** (job.attempts - 1),
                self.settings.webhook_backoff_max,
            )
            retry_at = time.time() + delay
        await self.state.fail(job.id, worker_id, error, retry_at=retry_at)
