"""``engram ui``: the dashboard on this machine's own store, on 127.0.0.1, without a key."""

from __future__ import annotations

import threading
import time
from typing import Annotated

import typer


def ui_command(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8765,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="do not open a browser")] = False,
) -> None:
    """Open the dashboard on the embedded store (what `Memory()` uses), on localhost only, no key."""
    try:
        import uvicorn

        from engram.server.app import create_app
        from engram.server.settings import ServerSettings
    except ImportError as e:
        from engram.errors import MissingDependencyError

        raise MissingDependencyError(e.name or "fastapi", "server") from e
    settings = ServerSettings.from_env(host="127.0.0.1", port=port, worker_tasks=0)
    app = create_app(settings, dashboard="local")
    url = f"http://127.0.0.1:{port}/"
    typer.echo(f"engram ui: {url} (Ctrl+C to stop)")
    if not no_browser:
        threading.Thread(target=_open_browser, args=(url,), daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _open_browser(url: str) -> None:
    import webbrowser

    time.sleep(1.0)  # let the server bind first
    webbrowser.open(url)
