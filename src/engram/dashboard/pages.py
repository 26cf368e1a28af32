"""Sign in and out, the overview, users/entities and events."""

import importlib.util
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engram.dashboard.charts import bar_chart
from engram.dashboard.context import Dashboard, Look, Viewer, dashboard_of, redirect
from engram.dashboard.data import (
    Overview,
    adds_per_day,
    entity_rows,
    entity_summary,
    int_param,
    last_days,
    queue_counts,
    store_description,
)
from engram.dashboard.security import COOKIE_NAME, new_session
from engram.errors import EngramError
from engram.server.routes.events import event_view
from engram.server.routes.helpers import delete_scope
from engram.service import ENTITY_TYPES, hash_api_key

EVENT_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")


def _safe_next(value: Any) -> str:
    text = str(value or "/")
    return text if text.startswith("/") and not text.startswith("//") else "/"


router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    dash = dashboard_of(request)
    nxt = _safe_next(request.query_params.get("next"))
    if dash.local:
        response = RedirectResponse(nxt, status_code=303)
        dash.set_session(response, new_session())
        return response
    return dash.render(request, "login.html", None, next=nxt, error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    dash = dashboard_of(request)
    form = await dash.form(request, dash.session_of(request))
    nxt = _safe_next(form.get("next"))
    key = str(form.get("api_key") or "").strip()
    ctx = await dash.server.state.lookup_key(hash_api_key(key)) if key else None
    if ctx is None:
        return dash.render(
            request,
            "login.html",
            None,
            code=401,
            next=nxt,
            error="That API key is not valid (or revoked).",
        )
    response = redirect(nxt)
    dash.set_session(response, new_session(hash_api_key(key)))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.form(request, dash.session_of(request))
    response = redirect("/login", "Signed out.")
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, viewer: Look) -> Response:
    dash = dashboard_of(request)
    info = await _overview(dash, viewer)
    entities = entity_summary(await entity_rows(viewer.memory, dash.server.state, viewer.project_id))
    labels = [d.strftime("%m-%d") for d in info.days]
    charts = {
        "adds": bar_chart(labels, info.adds, "Memories added per day"),
        "searches": bar_chart(labels, info.searches, "Searches per day"),
    }
    return dash.render(
        request,
        "overview.html",
        viewer,
        info=info,
        entities=entities,
        charts=charts,
        since=dash.activity.since,
        mcp=mcp_setup(str(request.base_url), viewer.project_id is not None),
    )


def mcp_setup(base_url: str, served: bool) -> dict[str, Any]:
    """How to point an MCP client at this Engram: the served ``/mcp`` endpoint, or ``engram mcp`` locally."""
    url = base_url.rstrip("/") + "/mcp"
    return {
        "served": served,
        "installed": importlib.util.find_spec("mcp") is not None,
        "url": url,
        "claude_code": (
            f'claude mcp add --transport http engram {url} --header "Authorization: Token YOUR_API_KEY"'
            if served
            else "claude mcp add engram -- engram mcp"
        ),
        "config": (
            f"engram mcp config cursor --http {url} --key YOUR_API_KEY"
            if served
            else "engram mcp config cursor"
        ),
    }


@router.get("/entities", response_class=HTMLResponse)
async def entities(request: Request, viewer: Look) -> Response:
    dash = dashboard_of(request)
    rows = await entity_rows(viewer.memory, dash.server.state, viewer.project_id)
    wanted = request.query_params.get("type")
    if wanted in ENTITY_TYPES:
        rows = [r for r in rows if r.type == wanted]
    return dash.render(request, "entities.html", viewer, rows=rows, types=ENTITY_TYPES, wanted=wanted)


@router.get("/entities/{type_}/{name:path}", response_class=HTMLResponse)
async def entity(request: Request, viewer: Look, type_: str, name: str) -> Response:
    dash = dashboard_of(request)
    if type_ not in ENTITY_TYPES:
        return dash.render(request, "missing.html", viewer, code=404, what=f"entity type {type_}")
    scope: dict[str, Any] = {f"{type_}_id": name}
    found = await viewer.memory.get_all(top_k=100, **scope)
    return dash.render(
        request,
        "entity.html",
        viewer,
        type_=type_,
        name=name,
        rows=found["results"],
        total=found["total"],
    )


@router.post("/entities/{type_}/{name:path}/delete")
async def delete_entity(request: Request, type_: str, name: str) -> Response:
    dash = dashboard_of(request)
    viewer, form = await dash.writer(request)
    back = f"/entities/{type_}/{quote(name, safe='')}"
    if type_ not in ENTITY_TYPES:
        return redirect("/entities", f"Unknown entity type {type_}.", "error")
    if form.get("confirm") != name:
        return redirect(back, f"Type the {type_} name exactly ({name}) to confirm.", "error")
    ids: dict[str, Any] = {f"{type_}_id": name}
    if viewer.ctx is not None:
        result = await delete_scope(dash.server, viewer.ctx, ids)
        await dash.server.state.delete_entity(viewer.ctx.project.id, type_, name)
    else:
        result = await viewer.memory.delete_all(**ids)
    return redirect("/entities", f"Deleted {result.get('deleted', 0)} memories of {type_} {name}.")


@router.get("/events", response_class=HTMLResponse)
async def events(request: Request, viewer: Look) -> Response:
    dash = dashboard_of(request)
    if viewer.project_id is None:
        return dash.render(request, "events.html", viewer, rows=[], total=0, status=None, page=1, pages=1)
    status = request.query_params.get("status")
    status = status if status in EVENT_STATUSES else None
    page = int_param(request.query_params, "page", 1, 1, 10**6)
    jobs, total = await dash.server.state.list_jobs(
        viewer.project_id, kind="ADD", status=status, limit=50, offset=(page - 1) * 50
    )
    rows = [event_view(j) for j in jobs]
    return dash.render(
        request,
        "events.html",
        viewer,
        rows=rows,
        total=total,
        status=status,
        page=page,
        pages=max(1, -(-total // 50)),
        statuses=EVENT_STATUSES,
    )


@router.post("/events/{event_id}/retry")
async def retry_event(request: Request, event_id: str) -> Response:
    dash = dashboard_of(request)
    viewer, _ = await dash.writer(request)
    if viewer.project_id is None:
        return redirect("/events", "There is no queue in engram ui.", "error")
    job = await dash.server.state.get_job(viewer.project_id, event_id)
    if job is None or job.kind != "ADD":
        return redirect("/events", f"Event {event_id} not found.", "error")
    if job.status != "FAILED":
        return redirect("/events", f"Event {event_id} has not failed: nothing to retry.", "error")
    try:
        again = await dash.server.state.enqueue(viewer.project_id, "ADD", job.payload)
    except EngramError as e:
        return redirect("/events", e.message, "error")
    dash.server.runner.wake.set()
    return redirect("/events", f"Queued again as event {again.job.id}.")


async def _overview(dash: Dashboard, viewer: Viewer) -> Overview:
    memory = viewer.memory
    days = last_days(14)
    total = (await memory.get_all(all_scopes=True, top_k=1))["total"]
    everything = (await memory.get_all(all_scopes=True, top_k=1, include_superseded=True))["total"]
    queue = await queue_counts(dash.server.state, viewer.project_id) if viewer.project_id else {}
    store, storage = store_description(memory)
    info = memory.embedder.info
    return Overview(
        total=total,
        superseded=everything - total,
        days=days,
        adds=await adds_per_day(memory, days),
        searches=dash.activity.searches(memory.namespace, days),
        queue=queue,
        storage=storage,
        embedder=f"{info.name} ({info.dim} dimensions)",
        store=store,
    )
