"""The FastAPI application: ``create_app(settings)`` wires the engine, the state and the job runner."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from engram import registry
from engram.config import MemoryConfig
from engram.memory import AsyncMemory
from engram.server.auth import Auth, RateLimiter
from engram.server.deps import Server
from engram.server.edge import Edge
from engram.server.errors import install_error_handlers
from engram.server.jobs import JobRunner
from engram.server.settings import ServerSettings
from engram.service import ServiceState

logger = logging.getLogger("engram.server")


def build_engine(settings: ServerSettings) -> AsyncMemory:
    """One engine per process; every project is a namespace view of it."""
    raw: dict[str, Any] = dict(settings.memory_config or {})
    if settings.home is not None and not (raw.get("store") or raw.get("vector_store")):
        raw["store"] = {"provider": "sqlite", "config": {"path": str(settings.home / "engram.db")}}
    raw.setdefault("llm_from_env", True)
    return AsyncMemory(config=MemoryConfig.model_validate(raw))


def build_state(settings: ServerSettings) -> ServiceState:
    """The server-state backend registered as ``state_backend`` (SQLite beside the memories by default)."""
    config = dict(settings.state_config)
    if settings.state_backend == "sqlite":
        config.setdefault("path", str(settings.resolved_state_path()))
    base: type = ServiceState  # (abstract: the registry checks instances against it)
    state: ServiceState = registry.create("service_state", settings.state_backend, config, base)
    return state


def create_app(
    settings: ServerSettings | None = None,
    *,
    engine: AsyncMemory | None = None,
    state: ServiceState | None = None,
) -> FastAPI:
    """Build the server app. ``engine`` and ``state`` default to what ``settings`` describe."""
    from engram.mcp import http_endpoint
    from engram.server.routes import ROUTERS

    settings = settings or ServerSettings.from_env()
    state = state or build_state(settings)
    engine = engine or build_engine(settings)
    runner = JobRunner(engine, state, settings)
    server = Server(
        settings, state, engine, runner, Auth(state, RateLimiter(), settings.rate_limit_per_minute)
    )
    mcp = http_endpoint(server)  # streamable HTTP MCP at /mcp (None without the mcp extra)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.open()
        runner.start(settings.worker_tasks)
        try:
            async with mcp.running() if mcp else contextlib.nullcontext():
                yield
        finally:
            await runner.stop()
            await engine.close()
            await state.close()

    app = FastAPI(
        title="Engram server",
        version="0.1.0",
        description="mem0-compatible memory API: projects, API keys, durable async adds.",
        lifespan=lifespan,
    )
    app.state.server = server
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if mcp:
        mcp.mount(app)
    app.add_middleware(Edge, max_bytes=settings.max_body_bytes)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After", "X-Request-ID"],
        )
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process reads ``ENGRAM_SERVER_*``)."""
    return create_app(ServerSettings.from_env())
