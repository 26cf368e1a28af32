"""The worker process (``engram worker``): job runner loops without the HTTP API.

Any number of worker processes and server processes can share one state store; each claims jobs
with a lease, so none is taken twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from engram.server.settings import ServerSettings


async def run_worker(settings: ServerSettings, *, stop: asyncio.Event | None = None) -> None:
    """Claim and run jobs from the shared state until ``stop`` is set (or SIGINT/SIGTERM)."""
    from engram.server.app import build_engine, build_state
    from engram.server.jobs import JobRunner

    state = build_state(settings)
    engine = build_engine(settings)
    await state.open()
    runner = JobRunner(engine, state, settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner.start(max(1, settings.worker_tasks))
    try:
        await stop.wait()
    finally:
        await runner.stop()
        await engine.close()
        await state.close()
