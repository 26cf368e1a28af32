"""What every handler is given: the :class:`Server` (engine, state, job runner) and the caller's key.

Handlers are plain functions; FastAPI fills ``server: ServerDep`` from ``app.state.server`` and
``ctx: Ctx`` by authenticating the request, so a handler can also be called directly in a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from engram.limits import Limits
from engram.memory import AsyncMemory
from engram.server.auth import Auth
from engram.server.jobs import JobRunner, namespace_for, new_runner_id
from engram.server.settings import ServerSettings
from engram.server.webhooks import Webhooks
from engram.service import KeyContext, ServiceState


@dataclass
class Server:
    """What the routes share."""

    settings: ServerSettings
    state: ServiceState
    engine: AsyncMemory
    runner: JobRunner
    auth: Auth
    runner_id: str = field(default_factory=new_runner_id)  # claims synchronous adds run inline

    @property
    def limits(self) -> Limits:
        """The input contract: the engine's ``config.limits``."""
        return self.engine.limits

    @property
    def webhooks(self) -> Webhooks:
        return self.runner.webhooks

    def memory(self, ctx: KeyContext) -> AsyncMemory:
        """The caller's project as an engine view."""
        return self.engine.namespace_view(namespace_for(ctx.project.id))


def get_server(request: Request) -> Server:
    """The app's :class:`Server` (set by ``create_app``)."""
    server: Server = request.app.state.server
    return server


async def authenticate(request: Request) -> KeyContext:
    """The caller's key, project and organization (401 / 429 otherwise)."""
    return await get_server(request).auth(request)


ServerDep = Annotated[Server, Depends(get_server)]
Ctx = Annotated[KeyContext, Depends(authenticate)]
