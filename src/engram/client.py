"""HTTP clients for an Engram server (or anything speaking mem0's Platform API).

:class:`MemoryClient` and :class:`AsyncMemoryClient` have mem0's client methods and return what the
server answers; they add ``wait_for_event(event_id, timeout=...)`` and ``add(..., wait=True)``. HTTP
errors become :mod:`engram.errors` exceptions.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, cast

import httpx

from engram.errors import (
    EngramError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RequestTooLargeError,
    ServerError,
    ValidationError,
    class_for,
)

__all__ = [
    "AsyncMemoryClient",
    "AuthenticationError",
    "EventFailedError",
    "MemoryClient",
    "PermissionDeniedError",
    "RequestTooLargeError",
    "ServerError",
]
from engram.sync import LoopThread, blocking

DEFAULT_HOST = "http://127.0.0.1:8000"
_TERMINAL = ("SUCCEEDED", "FAILED")
_TYPES = ("user", "agent", "app", "run")


AuthenticationError = NotAuthenticatedError  # the server refused the API key (401)


class EventFailedError(EngramError):
    """An async add ended FAILED; ``details["event"]`` holds the event."""

    code = "event_failed"


@dataclass
class _Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _error_for(response: httpx.Response) -> EngramError:
    """The typed error for a non-2xx answer: the class of the body's error code (see ``HTTP_STATUS``)."""
    status = response.status_code
    code, message, details = f"http_{status}", response.text[:500] or f"HTTP {status}", {}
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            code = str(err.get("code", code))
            message = str(err.get("message", message))
            details = dict(err.get("details") or {})
        elif isinstance(body, dict) and "detail" in body:
            message = str(body["detail"])
    except ValueError:
        pass
    details.setdefault("status_code", status)
    if status == 429:
        retry = response.headers.get("Retry-After")
        details["retry_after"] = int(retry) if retry and retry.isdigit() else None
    return class_for(code, status).from_wire(message, details)


def _scope_filters(filters: dict[str, Any] | None, ids: dict[str, Any]) -> dict[str, Any] | None:
    """Fold top-level scope ids into ``filters`` (the v3 API reads them there)."""
    given = _clean(ids)
    if not given:
        return filters
    if not filters:
        return given
    return {"AND": [given, filters]}


class _Requests:
    """Builds every request once; the sync and async clients only send them."""

    @staticmethod
    def add(messages: Any, kw: dict[str, Any], async_mode: bool, idempotency_key: str | None) -> _Call:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        elif isinstance(messages, dict):
            messages = [messages]
        body = {"messages": messages, **_clean(kw), "async_mode": async_mode}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _Call("POST", "/v3/memories/add/", json=body, headers=headers)

    @staticmethod
    def search(query: str, filters: dict[str, Any] | None, kw: dict[str, Any], ids: dict[str, Any]) -> _Call:
        body = {"query": query, "filters": _scope_filters(filters, ids), **_clean(kw)}
        return _Call("POST", "/v3/memories/search/", json=_clean(body))

    @staticmethod
    def get_all(
        filters: dict[str, Any] | None, page: int | None, page_size: int | None, ids: dict[str, Any]
    ) -> _Call:
        body = _clean({"filters": _scope_filters(filters, ids)})
        return _Call(
            "POST", "/v3/memories/", params=_clean({"page": page, "page_size": page_size}), json=body
        )


class _Base:
    def __init__(self, api_key: str | None, host: str | None) -> None:
        self.api_key = api_key or os.environ.get("ENGRAM_API_KEY") or os.environ.get("MEM0_API_KEY")
        if not self.api_key:
            raise ValidationError("An API key is required (api_key= or ENGRAM_API_KEY)", field="api_key")
        self.host = (host or os.environ.get("ENGRAM_HOST") or DEFAULT_HOST).rstrip("/")
        self.headers = {"Authorization": f"Token {self.api_key}", "User-Agent": "engram-python-client"}
        self.org_id: str | None = None
        self.project_id: str | None = None

    @staticmethod
    def _result(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise _error_for(response)
        return response.json()


def _kw(**values: Any) -> dict[str, Any]:
    return values


class AsyncMemoryClient(_Base):
    """Asynchronous client with the same methods as :class:`MemoryClient` (call ``await ping()`` or
    use ``async with`` to check the key first)."""

    def __init__(self, api_key: str | None = None, host: str | None = None, *, timeout: float = 60.0) -> None:
        super().__init__(api_key, host)
        self._http = httpx.AsyncClient(base_url=self.host, headers=self.headers, timeout=timeout)

    async def _send(self, call: _Call) -> Any:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json, headers=call.headers
            )
        except httpx.HTTPError as e:
            raise ServerError(f"Could not reach {self.host}: {e}") from e
        return self._result(response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncMemoryClient:
        await self.ping()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def ping(self) -> dict[str, Any]:
        """Check the key; remembers its ``org_id`` and ``project_id``."""
        answer: dict[str, Any] = await self._send(_Call("GET", "/v1/ping/"))
        self.org_id, self.project_id = answer.get("org_id"), answer.get("project_id")
        return answer

    async def add(
        self,
        messages: str | dict[str, Any] | list[dict[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        infer: bool | None = None,
        timestamp: int | float | str | None = None,
        expiration_date: str | None = None,
        prompt: str | None = None,
        async_mode: bool = True,
        wait: bool = False,
        timeout: float = 60.0,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Queue an add (``{"event_id", "status"}``); ``wait=True`` returns the finished results."""
        kw = _kw(
            user_id=user_id,
            agent_id=agent_id,
            app_id=app_id,
            run_id=run_id,
            metadata=metadata,
            infer=infer,
            timestamp=timestamp,
            expiration_date=expiration_date,
            prompt=prompt,
        )
        answer: dict[str, Any] = await self._send(_Requests.add(messages, kw, async_mode, idempotency_key))
        if wait and async_mode and answer.get("event_id"):
            event = await self.wait_for_event(answer["event_id"], timeout=timeout)
            return {"results": event.get("results") or [], "event_id": event["id"]}
        return answer

    async def get_event(self, event_id: str) -> dict[str, Any]:
        """One async add's event: status, results, error, timings."""
        return cast(dict[str, Any], await self._send(_Call("GET", f"/v1/event/{event_id}/")))

    async def list_events(
        self, *, page: int = 1, page_size: int = 50, status: str | None = None
    ) -> dict[str, Any]:
        """The project's add events, newest first, paged."""
        params = _clean({"page": page, "page_size": page_size, "status": status})
        return cast(dict[str, Any], await self._send(_Call("GET", "/v1/events/", params=params)))

    async def wait_for_event(
        self, event_id: str, *, timeout: float = 60.0, interval: float = 0.1
    ) -> dict[str, Any]:
        """Poll an event until SUCCEEDED (returned) or FAILED (:class:`EventFailedError`)."""
        deadline = time.monotonic() + timeout
        while True:
            event = await self.get_event(event_id)
            if event["status"] == "FAILED":
                raise EventFailedError(
                    f"Event {event_id} failed: {event.get('error')}", details={"event": event}
                )
            if event["status"] in _TERMINAL:
                return event
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Event {event_id} is still {event['status']} after {timeout} s")
            await asyncio.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))
            interval = min(interval * 1.5, 1.0)

    async def search(
        self,
        query: str,
        *,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        rerank: bool | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
        rewrite: bool | None = None,
    ) -> dict[str, Any]:
        """The most relevant memories of a scope: ``{"results": [...]}`` with scores (plus ``"rerank"``
        / ``"rewrite"`` notes when asked for; see docs/retrieval.md)."""
        ids = _kw(user_id=user_id, agent_id=agent_id, app_id=app_id, run_id=run_id)
        kw = _kw(top_k=top_k, threshold=threshold, rerank=rerank, rewrite=rewrite)
        return cast(dict[str, Any], await self._send(_Requests.search(query, filters, kw, ids)))

    async def get_all(
        self,
        *,
        filters: dict[str, Any] | None = None,
        page: int | None = None,
        page_size: int | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """``{"count", "next", "previous", "results"}``."""
        ids = _kw(user_id=user_id, agent_id=agent_id, app_id=app_id, run_id=run_id)
        return cast(dict[str, Any], await self._send(_Requests.get_all(filters, page, page_size, ids)))

    async def get(self, memory_id: str) -> dict[str, Any]:
        """One memory (NotFoundError if it is not in this project)."""
        return cast(dict[str, Any], await self._send(_Call("GET", f"/v1/memories/{memory_id}/")))

    async def update(
        self, memory_id: str, text: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Change a memory's text and/or metadata."""
        body = _clean({"text": text, "metadata": metadata})
        return cast(dict[str, Any], await self._send(_Call("PUT", f"/v1/memories/{memory_id}/", json=body)))

    async def delete(self, memory_id: str) -> dict[str, Any]:
        """Delete one memory."""
        return cast(dict[str, Any], await self._send(_Call("DELETE", f"/v1/memories/{memory_id}/")))

    async def delete_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Delete every memory of a scope (at least one id is required)."""
        params = _clean(_kw(user_id=user_id, agent_id=agent_id, app_id=app_id, run_id=run_id))
        return cast(dict[str, Any], await self._send(_Call("DELETE", "/v1/memories/", params=params)))

    async def history(self, memory_id: str) -> list[dict[str, Any]]:
        """Every change of a memory, oldest first."""
        return cast(
            list[dict[str, Any]], await self._send(_Call("GET", f"/v1/memories/{memory_id}/history/"))
        )

    async def users(self) -> dict[str, Any]:
        """Users, agents, apps and runs that have memories."""
        return cast(dict[str, Any], await self._send(_Call("GET", "/v1/entities/")))

    async def delete_users(
        self,
        user_id: str | None = None,
        agent_id: str | None = None,
        app_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Delete one entity's memories, or every entity's when no id is given."""
        chosen = [(t, n) for t, n in zip(_TYPES, (user_id, agent_id, app_id, run_id), strict=True) if n]
        targets = chosen or [(e["type"], e["name"]) for e in (await self.users())["results"]]
        for entity_type, name in targets:
            await self._send(_Call("DELETE", f"/v2/entities/{entity_type}/{name}/"))
        return {
            "message": "Entity deleted successfully."
            if chosen
            else "All users, agents, apps and runs deleted."
        }

    async def reset(self) -> dict[str, Any]:
        """Delete every entity and its memories in this project."""
        await self.delete_users()
        return {"message": "Client reset successful. All users and memories deleted."}

    async def batch_update(self, memories: list[dict[str, Any]]) -> dict[str, Any]:
        """Update up to 1000 memories: ``[{"memory_id", "text"?, "metadata"?}]``."""
        return cast(dict[str, Any], await self._send(_Call("PUT", "/v1/batch/", json={"memories": memories})))

    async def batch_delete(self, memories: list[dict[str, Any]]) -> dict[str, Any]:
        """Delete up to 1000 memories: ``[{"memory_id"}]``."""
        return cast(
            dict[str, Any], await self._send(_Call("DELETE", "/v1/batch/", json={"memories": memories}))
        )

    async def feedback(
        self, memory_id: str, feedback: str | None = None, feedback_reason: str | None = None
    ) -> dict[str, Any]:
        """Record feedback (POSITIVE, NEGATIVE, VERY_NEGATIVE) on a memory."""
        body = {"memory_id": memory_id, "feedback": feedback, "feedback_reason": feedback_reason}
        return cast(dict[str, Any], await self._send(_Call("POST", "/v1/feedback/", json=body)))

    async def create_memory_export(self, schema: Any, **filters: Any) -> dict[str, Any]:
        """Export a scope's memories; returns the export's ``id``."""
        result: dict[str, Any] = await self._send(
            _Call("POST", "/v1/exports/", json={"schema": schema, **filters})
        )
        return result

    async def get_memory_export(self, **filters: Any) -> dict[str, Any]:
        """An export by ``memory_export_id`` (or the latest)."""
        return cast(dict[str, Any], await self._send(_Call("POST", "/v1/exports/get/", json=filters)))


class MemoryClient:
    """Synchronous client: ``MemoryClient(api_key=..., host="http://127.0.0.1:8000")``.

    A blocking facade over :class:`AsyncMemoryClient` (same methods, same results); the key is checked
    with ``ping()`` on construction.
    """

    def __init__(self, api_key: str | None = None, host: str | None = None, *, timeout: float = 60.0) -> None:
        self._engine = AsyncMemoryClient(api_key, host, timeout=timeout)
        self._runner = LoopThread()
        self._finalizer = weakref.finalize(self, self._runner.stop)
        self.ping()

    @property
    def api_key(self) -> str | None:
        return self._engine.api_key

    @property
    def host(self) -> str:
        return self._engine.host

    @property
    def org_id(self) -> str | None:
        return self._engine.org_id

    @property
    def project_id(self) -> str | None:
        return self._engine.project_id

    def close(self) -> None:
        """Close the HTTP connections."""
        self._runner.run(self._engine.aclose())
        self._runner.stop()

    def __enter__(self) -> MemoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    ping = blocking(AsyncMemoryClient.ping)
    add = blocking(AsyncMemoryClient.add)
    get_event = blocking(AsyncMemoryClient.get_event)
    list_events = blocking(AsyncMemoryClient.list_events)
    wait_for_event = blocking(AsyncMemoryClient.wait_for_event)
    search = blocking(AsyncMemoryClient.search)
    get_all = blocking(AsyncMemoryClient.get_all)
    get = blocking(AsyncMemoryClient.get)
    update = blocking(AsyncMemoryClient.update)
    delete = blocking(AsyncMemoryClient.delete)
    delete_all = blocking(AsyncMemoryClient.delete_all)
    history = blocking(AsyncMemoryClient.history)
    users = blocking(AsyncMemoryClient.users)
    delete_users = blocking(AsyncMemoryClient.delete_users)
    reset = blocking(AsyncMemoryClient.reset)
    batch_update = blocking(AsyncMemoryClient.batch_update)
    batch_delete = blocking(AsyncMemoryClient.batch_delete)
    feedback = blocking(AsyncMemoryClient.feedback)
    create_memory_export = blocking(AsyncMemoryClient.create_memory_export)  # type: ignore[arg-type]
    get_memory_export = blocking(AsyncMemoryClient.get_memory_export)  # type: ignore[arg-type]
