"""The memories table (filter, sort, search, explain, bulk delete and export) and one memory's page."""

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from engram.dashboard.context import Dashboard, Look, Viewer, dashboard_of, redirect
from engram.dashboard.data import (
    PAGE_SIZES,
    SCAN_LIMIT,
    SORTS,
    ListQuery,
    ListResult,
    list_memories,
    search_memories,
)
from engram.dashboard.filterlang import parse_filter_box
from engram.errors import EngramError, ValidationError
from engram.transfer import export_ids
from engram.types import SCOPE_FIELDS

router = APIRouter(include_in_schema=False)


@router.get("/memories", response_class=HTMLResponse)
async def memories(request: Request, viewer: Look) -> Response:
    dash = dashboard_of(request)
    query = ListQuery.from_params(request.query_params)
    text = str(request.query_params.get("q") or "").strip()[:1000]
    result: ListResult | None = None
    hits: list[dict[str, Any]] | None = None
    error = None
    try:
        if text:
            hits = await search_memories(viewer.memory, text, parse_filter_box(query.filter), query)
            dash.activity.record_search(viewer.memory.namespace)
        else:
            result = await list_memories(viewer.memory, query)
    except EngramError as e:
        error = e.message
    return dash.render(
        request,
        "memories.html",
        viewer,
        query=query,
        q=text,
        result=result,
        hits=hits,
        error=error,
        sorts=SORTS,
        sizes=PAGE_SIZES,
        scan_limit=SCAN_LIMIT,
        url=_url_maker(query, text),
    )


@router.get("/memories/explain", response_class=HTMLResponse)
async def explain(request: Request, viewer: Look) -> Response:
    dash = dashboard_of(request)
    query = ListQuery.from_params(request.query_params)
    text = str(request.query_params.get("q") or "").strip()[:1000]
    wanted = request.query_params.get("id")
    breakdown = None
    if text and wanted:
        try:
            hits = await search_memories(
                viewer.memory, text, parse_filter_box(query.filter), query, explain=True
            )
        except EngramError:
            hits = []
        breakdown = next((h for h in hits if h["id"] == wanted), None)
    return dash.render(request, "explain.html", viewer, hit=breakdown)


@router.post("/memories/bulk")
async def bulk(request: Request) -> Response:
    dash = dashboard_of(request)
    viewer, form = await dash.writer(request)
    ids = form.get("ids") or []
    ids = [ids] if isinstance(ids, str) else list(ids)
    back = "/memories?" + str(form.get("back_query") or "")
    action = form.get("action")
    if action == "export_matching":
        return await _export(dash, viewer, str(form.get("filter") or ""), None)
    if not ids:
        return redirect(back, "Select at least one memory first.", "error")
    if action == "export":
        return await _export(dash, viewer, "", ids)
    if action == "delete":
        deleted = await _delete(dash, viewer, ids)
        return redirect(back, f"Deleted {deleted} memories.")
    return redirect(back, "Unknown action.", "error")


@router.get("/memories/{memory_id}", response_class=HTMLResponse)
async def one(request: Request, viewer: Look, memory_id: str) -> Response:
    dash = dashboard_of(request)
    try:
        item = await viewer.memory.get(memory_id)
        history = await viewer.memory.history(memory_id)
    except ValidationError:
        item, history = None, []
    if item is None and not history:
        return dash.render(request, "missing.html", viewer, code=404, what=f"memory {memory_id}")
    sources = await viewer.memory.sources(memory_id) if item else []
    replaced = await _superseded_by_this(viewer, item) if item else []
    return dash.render(
        request,
        "memory.html",
        viewer,
        item=item,
        memory_id=memory_id,
        history=history,
        sources=sources,
        replaced=replaced,
        metadata_json=json.dumps((item or {}).get("metadata") or {}, indent=2, ensure_ascii=False),
    )


@router.post("/memories/{memory_id}/edit")
async def edit(request: Request, memory_id: str) -> Response:
    dash = dashboard_of(request)
    viewer, form = await dash.writer(request)
    back = f"/memories/{memory_id}"
    text = str(form.get("text") or "").strip()
    try:
        metadata = json.loads(str(form.get("metadata") or "{}"))
        if not isinstance(metadata, dict):
            raise ValueError("metadata must be a JSON object")
    except ValueError as e:
        return redirect(back, f"Metadata is not a JSON object: {e}", "error")
    try:
        current = await viewer.memory.get(memory_id)
        if current is None:
            return redirect("/memories", f"Memory {memory_id} not found.", "error")
        changes: dict[str, Any] = {}
        if text and text != current["memory"]:
            changes["text"] = text
        if metadata != current["metadata"]:
            changes["metadata"] = metadata
        expiry = str(form.get("expiration_date") or "").strip() or None
        if expiry != current["expiration_date"]:
            changes["expiration_date" if expiry else "clear_expiration"] = expiry or True
        if not changes:
            return redirect(back, "Nothing changed.")
        await viewer.memory.update(memory_id, **changes)
    except EngramError as e:
        return redirect(back, e.message, "error")
    _notify(dash, viewer)
    return redirect(back, "Saved.")


@router.post("/memories/{memory_id}/delete")
async def delete(request: Request, memory_id: str) -> Response:
    dash = dashboard_of(request)
    viewer, _ = await dash.writer(request)
    deleted = await _delete(dash, viewer, [memory_id])
    if not deleted:
        return redirect("/memories", f"Memory {memory_id} not found.", "error")
    return redirect("/memories", "Memory deleted.")


def _url_maker(query: ListQuery, text: str) -> Any:
    def url(**changes: Any) -> str:
        params = query.params(**changes)
        if text:
            params["q"] = text
        return "/memories?" + urlencode(params)

    return url


async def _superseded_by_this(viewer: Viewer, item: dict[str, Any]) -> list[dict[str, Any]]:
    """Memories this one replaced (same scope; at most SCAN_LIMIT rows looked at)."""
    scope = {k: item[k] for k in SCOPE_FIELDS if item.get(k)}
    found = await viewer.memory.get_all(top_k=SCAN_LIMIT, include_superseded=True, show_expired=True, **scope)
    return [m for m in found["results"] if m.get("superseded_by") == item["id"]]


def _notify(dash: Dashboard, viewer: Viewer) -> None:
    """Relay the change to the project's webhooks now, as the REST API does for the same change."""
    if viewer.project_id is not None:
        dash.server.webhooks.notify()


async def _delete(dash: Dashboard, viewer: Viewer, ids: list[str]) -> int:
    gone = []
    for memory_id in ids[:1000]:
        try:
            item = await viewer.memory.get(memory_id)
            if item is not None:
                await viewer.memory.delete(memory_id)
                gone.append(item)
        except EngramError:
            continue
    _notify(dash, viewer)
    return len(gone)


async def _export(dash: Dashboard, viewer: Viewer, filter_box: str, ids: list[str] | None) -> Response:
    """The same document as ``/v1/exports/`` (``{"memories": [export lines]}``), as a download."""
    if ids is not None:
        chosen = ids[:10_000]
        recorded: dict[str, Any] = {"ids": chosen}
    else:
        parsed = parse_filter_box(filter_box)
        found = await viewer.memory.get_all(all_scopes=True, filters=parsed.filters, top_k=100_000)
        chosen = [m["id"] for m in found["results"] if parsed.text_matches(m["memory"])]
        recorded = parsed.filters or {}
    items = await export_ids(viewer.memory, chosen)
    document: dict[str, Any] = {"memories": items}
    if viewer.project_id is not None:
        export = await dash.server.state.create_export(viewer.project_id, None, recorded, document)
        document = {"id": export.id, **document}
    return JSONResponse(
        document, headers={"Content-Disposition": 'attachment; filename="engram-memories.json"'}
    )
