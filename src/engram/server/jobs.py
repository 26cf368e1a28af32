"""The background job runner: claims queued jobs (async adds, webhook deliveries, profile builds) and
runs them, and relays committed memory changes to webhook deliveries.

A runner claims a job with a lease and keeps it alive with heartbeats. If its process dies, the lease
runs out and another runner claims the job again; completion is guarded by the claim, so a job ends
exactly once. Re-running an add that had already written is harmless: exact duplicates in a scope
are not stored twice. Each server process runs ``worker_tasks`` runner loops; a worker process
(``engram worker``, :mod:`engram.server.worker`) runs only these loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

from engram.errors import (
    ConfigError,
    EngramError,
    ExtractionError,
    InferenceUnavailableError,
    ValidationError,
    status_of,
)
from engram.memory import AsyncMemory
from engram.server.settings import ServerSettings
from engram.server.webhooks import Webhooks
from engram.service import Job, JobKind, ServiceState

logger = logging.getLogger("engram.server.jobs")
_PERMANENT = (ValidationError, ConfigError, InferenceUnavailableError, ExtractionError)
SCOPE_KEYS = ("user_id", "agent_id", "app_id", "run_id")


def job_error(exc: BaseException, job_id: str) -> str:
    """What a failed job records as its error: ``"<code>: <message>"``, with no internal text for 5xx.

    The code is the error's own (:data:`engram.errors.HTTP_STATUS` gives its status); anything that is
    not an Engram error, or is a server-side failure, shows only a pointer to the server log.
    """
    if isinstance(exc, EngramError) and status_of(exc) < 500:
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, EngramError) and status_of(exc) != 500:  # provider failures: their first line
        return f"{exc.code}: {exc.message.splitlines()[0] if exc.message else exc.code}"
    code = exc.code if isinstance(exc, EngramError) else "internal_error"
    return f"{code}: internal error (job {job_id}; see the server log)"


def error_code(error: str | None) -> str:
    """The code of a job's recorded error (see :func:`job_error`)."""
    return (error or "internal_error").split(":", 1)[0]


def new_runner_id() -> str:
    """The identity under which a runner loop (or a request running a synchronous add) claims jobs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def namespace_for(project_id: str) -> str:
    """The engine namespace that holds one project's memories."""
    return project_id


class JobRunner:
    """Runs jobs for one process: background loops, or one job inline for a synchronous add."""

    def __init__(self, engine: AsyncMemory, state: ServiceState, settings: ServerSettings) -> None:
        self.engine = engine
        self.state = state
        self.settings = settings
        self.wake = asyncio.Event()
        self.webhooks = Webhooks(state, engine.store, settings, self.wake)
        self._loops: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def start(self, loops: int) -> None:
        """Start ``loops`` concurrent claim-and-run loops in the running event loop."""
        self._stop.clear()
        self._loops = [asyncio.create_task(self.run_forever(self._stop)) for _ in range(loops)]
        if loops:
            self._loops.append(asyncio.create_task(self.relay_forever(self._stop)))
        if loops and self.settings.retention_days > 0:
            self._loops.append(asyncio.create_task(self.prune_forever(self._stop)))

    async def stop(self) -> None:
        """Stop the loops (a job being run is handed back at once) and close the webhook client."""
        self._stop.set()
        self.wake.set()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        await self.webhooks.aclose()

    async def run_forever(
        self, stop: asyncio.Event, kinds: tuple[JobKind, ...] = ("ADD", "WEBHOOK", "PROFILE")
    ) -> None:
        """Claim and run jobs until ``stop`` is set."""
        runner_id = new_runner_id()
        while not stop.is_set():
            job = await self._claim(runner_id, kinds)
            if job is None:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self.settings.poll_interval)
                continue
            try:
                await self.process(job, runner_id)
            except asyncio.CancelledError:  # shutting down: hand the job back now, not after the lease
                with contextlib.suppress(Exception):
                    await self.state.fail(
                        job.id, runner_id, "interrupted: worker stopped", retry_at=time.time()
                    )
                raise
            except Exception:  # a bug must not kill the loop; the lease will expire and retry
                logger.exception("job %s crashed", job.id)

    async def relay_forever(self, stop: asyncio.Event) -> None:
        """Relay committed memory changes to webhook deliveries (see :mod:`engram.server.webhooks`):
        at once after a write in this process, else every ``poll_interval`` (writes of other
        processes, and changes whose relay a crash interrupted)."""
        changed = self.webhooks.changed
        while not stop.is_set():
            changed.clear()
            try:
                await self.engine.open()
                await self.webhooks.relay()
            except Exception:  # a store or state outage: try again at the next poll
                logger.exception("webhook relay failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=self.settings.poll_interval)

    async def prune_forever(self, stop: asyncio.Event) -> None:
        """Every ``prune_interval``: delete what is older than ``retention_days`` (finished jobs, ...)."""
        while not stop.is_set():
            try:
                deleted = await self.state.prune(self.settings.retention_days * 86_400)
                if deleted:
                    logger.info("pruned %d finished jobs and deliveries", deleted)
            except EngramError as e:
                logger.warning("pruning failed: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.prune_interval)

    async def _claim(self, runner_id: str, kinds: tuple[JobKind, ...]) -> Job | None:
        try:
            return await self.state.claim(
                runner_id,
                kinds=kinds,
                lease_seconds=self.settings.lease_seconds,
                max_attempts=self.settings.job_max_attempts,
            )
        except EngramError as e:
            logger.warning("claim failed: %s", e)
            return None

    async def process(self, job: Job, runner_id: str) -> None:
        """Run one claimed job to its end (or to a scheduled retry)."""
        if job.kind == "ADD":
            await self._run_add(job, runner_id)
        elif job.kind == "PROFILE":
            await self._run_profiles(job, runner_id)
        else:
            await self.webhooks.deliver(job, runner_id)

    async def _heartbeat(self, job_id: str, runner_id: str) -> None:
        every = max(self.settings.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            if not await self.state.heartbeat(job_id, runner_id, self.settings.lease_seconds):
                return

    async def _run_add(self, job: Job, runner_id: str) -> None:
        beat = asyncio.create_task(self._heartbeat(job.id, runner_id))
        kwargs = dict(job.payload["kwargs"])
        try:
            result = await self._add(job, kwargs)
        except _PERMANENT as e:
            await self.state.fail(job.id, runner_id, job_error(e, job.id))
            return
        except Exception as e:
            error = job_error(e, job.id)
            logger.warning("add job %s attempt %d failed", job.id, job.attempts, exc_info=e)
            retry_at = None
            if job.attempts < self.settings.job_max_attempts:
                retry_at = time.time() + min(2.0**job.attempts, 60.0)
            await self.state.fail(job.id, runner_id, error, retry_at=retry_at)
            return
        finally:
            beat.cancel()
        results = result.get("results", [])
        if await self.state.complete(job.id, runner_id, results):
            scope = {k: kwargs[k] for k in SCOPE_KEYS if kwargs.get(k)}
            await self.state.touch_entities(job.project_id, scope)
        self.webhooks.notify()

    async def _run_profiles(self, job: Job, runner_id: str) -> None:
        """Rebuild the profiles a PROFILE job names (see :mod:`engram.server.profile_jobs`)."""
        from engram.server.profile_jobs import run_profile_job

        beat = asyncio.create_task(self._heartbeat(job.id, runner_id))
        try:
            view = self.engine.namespace_view(namespace_for(job.project_id))
            results = await run_profile_job(view, self.state, job)
        except Exception as e:  # a store outage: retried like an add
            retry_at = time.time() + 1.0 if job.attempts < self.settings.job_max_attempts else None
            await self.state.fail(job.id, runner_id, job_error(e, job.id), retry_at=retry_at)
            return
        finally:
            beat.cancel()
        await self.state.complete(job.id, runner_id, results)

    async def _add(self, job: Job, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.settings.job_delay_ms:
            await asyncio.sleep(self.settings.job_delay_ms / 1000)
        kwargs = dict(kwargs)
        messages = kwargs.pop("messages")
        if kwargs.get("infer", True) and not kwargs.get("prompt"):
            kwargs["prompt"] = await self._project_instructions(job.project_id, kwargs)
        view = self.engine.namespace_view(namespace_for(job.project_id))
        return await view.add(messages, **kwargs)

    async def _project_instructions(self, project_id: str, kwargs: dict[str, Any]) -> str | None:
        """The project's custom instructions (its agent ones for agent-only scopes), if any."""
        settings = await self.state.get_project_settings(project_id)
        if kwargs.get("agent_id") and not kwargs.get("user_id") and settings.get("agent_custom_instructions"):
            return str(settings["agent_custom_instructions"])
        value = settings.get("custom_instructions")
        return str(value) if value else None
