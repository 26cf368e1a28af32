"""Webhooks: the relay from the store's change feed to queued deliveries, and signed delivery.

The outbox is the store's history (:mod:`engram.stores.sql.changes`): every memory change commits its
history row in the memory's own transaction. The relay (:meth:`Webhooks.relay`, run by the job runner
of every server and worker process) reads the changes after the cursor kept in the server state,
queues one WEBHOOK job per change and subscribed webhook, and then moves the cursor. Each job's
idempotency key is ``webhook:<hook id>:<change id>``, so relays running at once, or a relay that died
between queueing and moving the cursor, queue each delivery once: a committed change is delivered
after any crash, and never twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from engram.interfaces import Store
from engram.server.isotime import iso
from engram.server.settings import ServerSettings
from engram.server.signing import SIGNATURE_HEADER, sign
from engram.service import Delivery, Job, ServiceState, Webhook
from engram.types import ChangeEvent

EVENT_TYPES = {"ADD": "memory_add", "UPDATE": "memory_update", "DELETE": "memory_delete"}
FEED = "webhooks"  # the name of the relay's cursor in the server state
RELAY_BATCH = 500  # changes read per step


def delivery_body(change: ChangeEvent, event_type: str, webhook_id: int) -> dict[str, Any]:
    """The JSON a webhook receives for one change (mem0's payload shape)."""
    return {
        "event_details": {
            "id": change.memory_id,
            "data": {"memory": change.new_memory if change.new_memory is not None else change.old_memory},
            "event": change.event,
        },
        "event_type": event_type,
        "project_id": change.namespace,  # the server keeps a project's memories in its own namespace
        "webhook_id": webhook_id,
        "timestamp": iso(change.created_at.timestamp()),
    }


class Webhooks:
    """Relays memory changes to queued deliveries and performs them (retried through the job queue)."""

    def __init__(
        self, state: ServiceState, store: Store, settings: ServerSettings, wake: asyncio.Event
    ) -> None:
        self.state = state
        self.store = store
        self.settings = settings
        self.wake = wake  # set when a delivery is queued, so an idle job runner claims it at once
        self.changed = asyncio.Event()  # set after a write in this process: relay now, not at the poll
        self._http: Any = None

    def notify(self) -> None:
        """Memories changed in this process: relay now rather than at the next poll."""
        self.changed.set()

    async def relay(self) -> int:
        """Queue the deliveries of the changes committed since the cursor; the number queued."""
        if not self.store.keeps_changes:
            return 0
        # None: from the start of the feed (a webhook is not sent the changes made before it existed)
        cursor = await self.state.get_cursor(FEED)
        queued = 0
        while True:
            batch = await self.store.changes(cursor, RELAY_BATCH)
            if not batch:
                return queued
            queued += await self._queue(batch)
            if not await self.state.move_cursor(FEED, cursor, batch[-1].cursor):
                return queued  # another process moved it on: the next pass goes on from there
            cursor = batch[-1].cursor
            if len(batch) < RELAY_BATCH:
                return queued

    async def _queue(self, batch: list[ChangeEvent]) -> int:
        """One WEBHOOK job per change and webhook that was subscribed to it (idempotent)."""
        hooks: dict[str, list[Webhook]] = {}
        queued = 0
        for change in batch:
            event_type = EVENT_TYPES.get(change.event)
            if event_type is None:  # SUPERSEDE: mem0 sends no webhook for it
                continue
            if change.namespace not in hooks:
                found = await self.state.list_webhooks(change.namespace)
                hooks[change.namespace] = [h for h in found if h.is_active]
            for hook in hooks[change.namespace]:
                if hook.event_types and event_type not in hook.event_types:
                    continue
                if hook.created_at > change.created_at.timestamp():
                    continue  # the change came before the webhook
                payload = {"webhook_id": hook.id, "body": delivery_body(change, event_type, hook.id)}
                key = f"webhook:{hook.id}:{change.id}"
                done = await self.state.enqueue(change.namespace, "WEBHOOK", payload, idempotency_key=key)
                queued += done.created
        if queued:
            self.wake.set()
        return queued

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
