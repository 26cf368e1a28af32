"""Start the server (uvicorn) or a standalone job worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from engram.errors import MissingDependencyError
from engram.server.settings import ServerSettings

logger = logging.getLogger("engram.server")


def run(**overrides: Any) -> None:
    """Serve until interrupted. Settings come from ``ENGRAM_SERVER_*`` and ``overrides``."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise MissingDependencyError(e.name or "fastapi", "server") from e

    settings = ServerSettings.from_env(**overrides)
    os.environ.update(settings.to_env())  # uvicorn worker processes rebuild the settings from these
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "engram.server.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        timeout_graceful_shutdown=10,
    )


async def run_worker(settings: ServerSettings, *, stop: asyncio.Event | None = None) -> None:
    """Claim and run jobs from the shared state until ``stop`` is set (or SIGINT/SIGTERM)."""
    from engram.server.app import build_engine, build_state
    from engram.server.worker import Runner

    state = build_state(settings)
    engine = build_engine(settings)
    await state.open()
    runner = Runner(engine, state, settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(runner.run_forever(stop)) for _ in range(max(1, settings.worker_tasks))]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.aclose()
        await engine.close()
        await state.close()
