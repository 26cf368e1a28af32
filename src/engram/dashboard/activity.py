"""Search counts per namespace and day, kept in this process (searches leave no row in any store)."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engram.server.jobs import namespace_for

SEARCH_PATHS = frozenset({"/v2/memories/search/", "/v3/memories/search/"})
KEEP_DAYS = 60


class Activity:
    """Counts of searches by namespace and UTC day since this process started."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[date, int]] = defaultdict(dict)
        self._lock = threading.Lock()
        self.since = datetime.now(UTC)

    def record_search(self, namespace: str, when: datetime | None = None) -> None:
        day = (when or datetime.now(UTC)).date()
        with self._lock:
            days = self._counts[namespace]
            days[day] = days.get(day, 0) + 1
            for old in [d for d in days if d < day - timedelta(days=KEEP_DAYS)]:
                del days[old]

    def searches(self, namespace: str, days: list[date]) -> list[int]:
        with self._lock:
            counts = dict(self._counts.get(namespace, {}))
        return [counts.get(d, 0) for d in days]


class SearchCounter:
    """ASGI middleware counting successful REST searches per project (the API key's project)."""

    def __init__(self, app: ASGIApp, activity: Activity) -> None:
        self.app = app
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in SEARCH_PATHS:
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        ctx = (scope.get("state") or {}).get("ctx")
        if status == 200 and ctx is not None:
            self.activity.record_search(namespace_for(ctx.project.id))
