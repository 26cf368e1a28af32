"""Streamable HTTP MCP on ``engram serve``: ``/mcp`` and OpenMemory's ``/mcp/{client_name}/http/{user_id}``.

Every request is authenticated with the REST API's keys (``Authorization: Token|Bearer <key>``, the
same rate limits) and confined to the key's project: tools run on ``server.memory(ctx)``, the
project's namespace view. Writes go through the server's job queue, webhooks and entity records like
the REST routes. The user comes from the tool arguments, else the ``X-Engram-User-Id`` header, else the
URL. The server is stateless (each request stands alone), so it works with several server processes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from engram.errors import status_of
from engram.mcp.backend import Caller, MemoryBackend, ToolFailure
from engram.mcp.tools import ToolNames, build_server
from engram.server.auth import require_write
from engram.server.errors import ApiError, error_response
from engram.server.routes.helpers import delete_scope
from engram.service import KeyContext

if TYPE_CHECKING:
    from engram.server.deps import Server

USER_HEADER = "x-engram-user-id"
_STATE_KEY = "engram_mcp"
_HTTP_CONFINEMENT = "this key's project"


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    try:
        yield
    except ApiError as e:
        raise ToolFailure(e.message) from e


class ProjectBackend(MemoryBackend):
    """The tools' operations for one API key: its project's memories, the server's side effects."""

    def __init__(self, server: Server, ctx: KeyContext) -> None:
        super().__init__(server.memory(ctx))
        self.server = server
        self.ctx = ctx

    async def add(self, messages: Any, scope: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        with _api_errors():
            require_write(self.ctx)
        args = {k: v for k, v in {"messages": messages, **scope, **kwargs}.items() if v is not None}
        worker = self.server.runner_id
        enqueued = await self.server.state.enqueue(
            self.ctx.project.id,
            "ADD",
            {"request": dict(args), "kwargs": args},
            claim_as=worker,
            lease_seconds=self.server.settings.lease_seconds,
        )
        await self.server.runner.process(enqueued.job, worker)
        job = await self.server.state.get_job(self.ctx.project.id, enqueued.job.id)
        if job is None or job.status != "SUCCEEDED":
            error = (job.error if job else None) or "the add did not finish"
            raise ToolFailure(error.split(": ", 1)[-1])
        return list(job.results or [])

    async def update(
        self, memory_id: str, text: str | None, metadata: dict[str, Any] | None
    ) -> dict[str, Any]:
        with _api_errors():
            require_write(self.ctx)
        result = await super().update(memory_id, text, metadata)
        self.server.webhooks.notify()
        return result

    async def delete(self, memory_id: str) -> None:
        with _api_errors():
            require_write(self.ctx)
        await super().delete(memory_id)
        self.server.webhooks.notify()

    async def delete_all(self, scope: dict[str, Any]) -> int:
        with _api_errors():
            require_write(self.ctx)
            return int((await delete_scope(self.server, self.ctx, dict(scope)))["deleted"])

    async def entities(self, caller: Caller) -> list[dict[str, Any]]:
        rows = []
        for entity in await self.server.state.list_entities(self.ctx.project.id):
            total = await self.count({f"{entity.type}_id": entity.name})
            if total:
                rows.append({"type": entity.type, "name": entity.name, "total_memories": total})
        return rows

    async def delete_entity(self, key: str, name: str) -> int:
        deleted = await self.delete_all({key: name})
        await self.server.state.delete_entity(self.ctx.project.id, key.removesuffix("_id"), name)
        return deleted


async def _resolve(ctx: Context) -> tuple[MemoryBackend, Caller]:
    request = ctx.request_context.request
    found = getattr(request, "scope", {}).get("state", {}).get(_STATE_KEY)
    if found is None:  # only reachable if the endpoint is served without McpEndpoint in front
        raise ToolFailure("not authenticated")
    backend, caller = found
    return backend, caller


class McpEndpoint:
    """The ASGI endpoint before two MCP servers: mem0's tool names at /mcp, OpenMemory's on its URL."""

    def __init__(self, server: Server) -> None:
        self.server = server
        logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)  # one INFO line per request
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)  # the API key guards it
        self.apps = {}
        for names in ("mem0", "openmemory"):
            mcp = build_server(_resolve, names)  # type: ignore[arg-type]
            mcp.streamable_http_app(stateless_http=True, json_response=True, transport_security=security)
            self.apps[names] = mcp

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for mcp in self.apps.values():
                await stack.enter_async_context(mcp.session_manager.run())
            yield

    def mount(self, app: FastAPI) -> None:
        for path in ("/mcp", "/mcp/", "/mcp/{client_name}/http/{user_id}"):
            app.router.routes.append(Route(path, endpoint=self, include_in_schema=False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            key_ctx = await self.server.auth(request)
        except ApiError as e:
            await error_response(status_of(e), e.code, e.message, e.details, e.headers)(scope, receive, send)
            return
        params = scope.get("path_params") or {}
        names: ToolNames = "openmemory" if "client_name" in params else "mem0"
        caller = self.caller(request, params)
        state = {**(scope.get("state") or {}), _STATE_KEY: (ProjectBackend(self.server, key_ctx), caller)}
        await self.apps[names].session_manager.handle_request({**scope, "state": state}, receive, send)

    @staticmethod
    def caller(request: Request, params: dict[str, Any]) -> Caller:
        """Any user of the key's project; the header (or the URL) names the default one."""
        defaults = {}
        user = request.headers.get(USER_HEADER) or params.get("user_id")
        if user:
            defaults["user_id"] = str(user)
        recorded = {"app_id": str(params["client_name"])} if params.get("client_name") else {}
        return Caller(defaults, allow_any_user=True, confinement=_HTTP_CONFINEMENT, recorded=recorded)
