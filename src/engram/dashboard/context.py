"""Who is looking: the dashboard's shared objects, the signed-in viewer and the request guards."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engram.dashboard.activity import Activity
from engram.dashboard.security import (
    COOKIE_NAME,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_SECONDS,
    Session,
    Signer,
    csrf_ok,
    new_session,
)
from engram.memory import AsyncMemory
from engram.server.jobs import namespace_for
from engram.service import KeyContext

if TYPE_CHECKING:
    from engram.server.deps import Server

HERE = Path(__file__).parent
FLASH_COOKIE = "engram_flash"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


class NeedsLogin(Exception):
    """Raised by the guards when there is no valid session: pages redirect to the sign-in page."""


class Refused(Exception):
    """A request the dashboard refuses (missing CSRF token, read-only key, foreign host)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Viewer:
    """The signed-in user: the memories of their key's project (or the local library's namespace)."""

    memory: AsyncMemory
    session: Session
    ctx: KeyContext | None = None  # None in `engram ui` (local, no key)

    @property
    def project_id(self) -> str | None:
        return self.ctx.project.id if self.ctx else None

    @property
    def admin(self) -> bool:
        """May change things: a read-write key, or the local user."""
        return self.ctx is None or not self.ctx.key.read_only

    @property
    def label(self) -> str:
        if self.ctx is None:
            return f"local · {self.memory.namespace}"
        return f"{self.ctx.org.name} / {self.ctx.project.name}"


@dataclass
class Dashboard:
    """Everything the dashboard routes share."""

    server: Server
    signer: Signer
    local: bool
    activity: Activity = field(default_factory=Activity)
    env: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["size"] = _size
        self.env.filters["count"] = _count
        self.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
        self.env.globals["csrf_field"] = CSRF_FIELD

    # -- sessions ---------------------------------------------------------------------------------
    def session_of(self, request: Request) -> Session | None:
        return self.signer.loads(request.cookies.get(COOKIE_NAME))

    def set_session(self, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE_NAME,
            self.signer.dumps(session),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=False,  # served over plain HTTP on localhost too; put TLS in front in production
            path="/",
        )

    async def viewer(self, request: Request) -> Viewer:
        """The signed-in viewer, or :class:`NeedsLogin`."""
        self._check_host(request)
        session = self.session_of(request)
        if self.local:
            if session is None:
                raise NeedsLogin()
            return Viewer(self.server.engine, session)
        if session is None or session.key_hash is None:
            raise NeedsLogin()
        ctx = await self.server.state.lookup_key(session.key_hash)
        if ctx is None:  # revoked since
            raise NeedsLogin()
        return Viewer(self.server.engine.namespace_view(namespace_for(ctx.project.id)), session, ctx)

    async def writer(self, request: Request) -> tuple[Viewer, dict[str, Any]]:
        """A viewer allowed to change things, with the posted form (CSRF checked)."""
        viewer = await self.viewer(request)
        form = await self.form(request, viewer.session)
        if not viewer.admin:
            raise Refused(403, "This API key is read-only: it cannot change anything.")
        return viewer, form

    async def form(self, request: Request, session: Session | None) -> dict[str, Any]:
        """The posted form, refused (403) unless it carries the session's CSRF token."""
        data = await request.form()
        form: dict[str, Any] = {}
        for key, value in data.multi_items():
            form.setdefault(key, []).append(value)
        flat = {k: v[0] if len(v) == 1 else v for k, v in form.items()}
        token = flat.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not isinstance(token, str) or not csrf_ok(session, token):
            raise Refused(403, "The form's security token is missing or stale: reload the page and retry.")
        return flat

    def _check_host(self, request: Request) -> None:
        """`engram ui` answers only to loopback host names (no DNS rebinding)."""
        if self.local:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0]
            if host not in LOCAL_HOSTS:
                raise Refused(403, "engram ui only answers on 127.0.0.1 or localhost.")

    def anonymous_session(self, request: Request) -> Session:
        session = self.session_of(request)
        return session if session is not None else new_session()

    # -- rendering --------------------------------------------------------------------------------
    def render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        session = viewer.session if viewer else self.anonymous_session(request)
        flash = _read_flash(request)
        html = self.env.get_template(template).render(
            request_path=request.url.path,
            viewer=viewer,
            local=self.local,
            csrf=session.csrf,
            flash=flash,
            **values,
        )
        response = HTMLResponse(html, status_code=code, headers=SECURITY_HEADERS)
        if viewer is None or self.session_of(request) is None:
            self.set_session(response, session)
        if flash:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response


def dashboard_of(request: Request) -> Dashboard:
    """The dashboard serving this request (set by :func:`engram.dashboard.mount_dashboard`)."""
    dash = request.app.state.dashboard
    assert isinstance(dash, Dashboard)
    return dash


async def current_viewer(request: Request) -> Viewer:
    """FastAPI dependency: the signed-in viewer, or a redirect to the sign-in page."""
    return await dashboard_of(request).viewer(request)


Look = Annotated[Viewer, Depends(current_viewer)]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def redirect(url: str, message: str | None = None, kind: str = "ok") -> RedirectResponse:
    """A 303 to ``url``, with a one-time message shown by the next page."""
    response = RedirectResponse(url, status_code=303)
    if message:
        response.set_cookie(
            FLASH_COOKIE,
            quote(json.dumps({"kind": kind, "text": message})),
            max_age=60,
            httponly=True,
            samesite="strict",
            path="/",
        )
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    from urllib.parse import unquote

    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(unquote(raw))
        return {"kind": str(data["kind"]), "text": str(data["text"])}
    except (ValueError, KeyError, TypeError):
        return None


def _when(value: Any) -> str:
    """An ISO string or epoch seconds as ``YYYY-MM-DD HH:MM`` UTC; empty for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(value))
    text = str(value)
    return text[:16].replace("T", " ") if len(text) >= 16 else text


def _size(value: int) -> str:
    """Bytes for people: ``812 KB``, ``3.4 MB``."""
    if value < 1024 * 1024:
        return f"{max(1, round(value / 1024))} KB"
    if value < 1024**3:
        return f"{value / 1024**2:.1f} MB"
    return f"{value / 1024**3:.2f} GB"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 memory``, ``2 memories``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
