"""``engram serve`` and ``engram worker``."""

from __future__ import annotations

from typing import Annotated

import typer


def serve_command(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="server processes (default 1)")] = None,
    worker_tasks: Annotated[
        int | None, typer.Option("--worker-tasks", help="job runner loops in each server process; 0: none")
    ] = None,
) -> None:
    """Serve mem0's Platform API on the embedded store (settings: ENGRAM_SERVER_* variables)."""
    from engram.server.run import run

    run(host=host, port=port, workers=workers, worker_tasks=worker_tasks)


def worker_command(
    tasks: Annotated[int, typer.Option(help="concurrent jobs in this process")] = 2,
) -> None:
    """Run queued async adds and webhook deliveries in a separate process."""
    import asyncio

    from engram.server.settings import ServerSettings
    from engram.server.worker import run_worker

    settings = ServerSettings.from_env(worker_tasks=tasks)
    typer.echo(f"engram worker: {settings.resolved_state_path()} ({tasks} tasks)")
    asyncio.run(run_worker(settings))
