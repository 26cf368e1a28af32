"""Webhook fan-out (one queued WEBHOOK job per change and subscribed webhook) and signed delivery."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from engram.server.isotime import iso
from engram.server.settings import ServerSettings
from engram.server.signing import SIGNATURE_HEADER, sign
from engram.service import Delivery, Job, ServiceState

EVENT_TYPES = {"ADD": "memory_add", "UPDATE": "memory_update", "DELETE": "memory_delete"}


class Webhooks:
    """Queues deliveries for memory changes and performs them (with retries through the job queue)."""

    def __init__(self, state: ServiceState, settings: ServerSettings, wake: asyncio.Event) -> None:
        self.state = state
        self.settings = settings
        self.wake = wake  # set when a delivery is queued, so an idle job runner claims it at once
        self._http: Any = None

    async def fire(self, project_id: str, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue one signed delivery per subscribed webhook for each ADD/UPDATE/DELETE."""
        relevant = [(EVENT_TYPES[event], item) for event, item in changes if event in EVENT_TYPES]
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

    async def deliver(self, job: Job, runner_id: str) -> None:
        """POST one queued delivery; log it; complete the job or schedule a retry with backoff."""
        hook = await self.state.get_webhook(job.project_id, int(job.payload["webhook_id"]))
        if hook is None or not hook.is_active:
            await self.state.complete(job.id, runner_id, [{"skipped": "webhook deleted or inactive"}])
            return
        body = json.dumps(job.payload["body"], separators=(",", ":"), sort_keys=True).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, body),
            "X-Engram-Event": str(job.payload["body"].get("event_type")),
            "X-Engram-Delivery": job.id,
            "User-Agent": "engram-webhooks",
        }
        status, error = await self._post(hook.url, body, headers)
        await self.state.log_delivery(Delivery(hook.id, job.id, job.attempts, status, error, time.time()))
        if error is None:
            await self.state.complete(job.id, runner_id, [{"status_code": status}])
            return
        await self.state.fail(job.id, runner_id, error, retry_at=self._retry_at(job.attempts))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.webhook_timeout)
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return None, f"{type(e).__name__}: {e}"
        status = response.status_code
        return status, None if 200 <= status < 300 else f"HTTP {status}"

    def _retry_at(self, attempts: int) -> float | None:
        if attempts >= self.settings.webhook_max_attempts:
            return None
        delay: float = self.settings.webhook_backoff_seconds * 2.0 ** (attempts - 1)
        return time.time() + min(delay, self.settings.webhook_backoff_max)

    async def aclose(self) -> None:
        """Close the HTTP client used for deliveries."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
