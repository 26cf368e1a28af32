"""The web dashboard: server-rendered pages (Jinja2 + vendored htmx) over the public API and server state.

``engram serve`` mounts it at ``/`` beside the REST API (sign in with an API key); ``engram ui`` mounts
it in local mode on 127.0.0.1 over the library's own namespace (no key).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from engram.errors import MissingDependencyError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from engram.server.deps import Server


def mount_dashboard(app: FastAPI, server: Server, *, local: bool = False) -> None:
    """Add the dashboard's pages, static files and guards to ``app``."""
    try:
        import jinja2  # noqa: F401
        import python_multipart  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError((e.name or "jinja2").replace("_", "-"), "server") from e
    from fastapi import Request
    from fastapi.responses import HTMLResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from engram.dashboard import pages, pages_memories, pages_settings
    from engram.dashboard.activity import SearchCounter
    from engram.dashboard.context import HERE, Dashboard, NeedsLogin, Refused
    from engram.dashboard.security import Signer, load_secret

    dash = Dashboard(server, Signer(load_secret(server.settings.resolved_home())), local)
    app.state.dashboard = dash

    async def needs_login(request: Request, _: Exception) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)

    async def refused(request: Request, exc: Exception) -> HTMLResponse:
        assert isinstance(exc, Refused)
        return dash.render(request, "refused.html", None, code=exc.status, message=exc.message)

    app.add_exception_handler(NeedsLogin, needs_login)
    app.add_exception_handler(Refused, refused)
    for module in (pages, pages_memories, pages_settings):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="dashboard-static")
    app.add_middleware(SearchCounter, activity=dash.activity)
