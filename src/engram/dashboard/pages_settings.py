"""Settings for project admins: API keys, webhooks, custom instructions and categories, export/import."""

import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError as PydanticValidationError
from starlette.datastructures import UploadFile

from engram.dashboard.context import Dashboard, Look, Viewer, dashboard_of, redirect
from engram.errors import EngramError
from engram.server.isotime import iso
from engram.server.routes.webhooks import WebhookBody, WebhookPatch
from engram.service import WEBHOOK_EVENT_TYPES
from engram.types import SCOPE_FIELDS

MAX_IMPORT = 10_000


router = APIRouter(include_in_schema=False)


async def page(request: Request, viewer: Viewer, **extra: Any) -> Response:
    """The settings page (``extra``: a key just created, shown once)."""
    dash = dashboard_of(request)
    state = dash.server.state
    values: dict[str, Any] = {"keys": [], "hooks": [], "project": {}, "event_types": WEBHOOK_EVENT_TYPES}
    if viewer.project_id is not None:
        values["keys"] = await state.list_keys(viewer.project_id)
        hooks = await state.list_webhooks(viewer.project_id)
        values["hooks"] = [(h, (await state.list_deliveries(h.id))[-10:][::-1]) for h in hooks]
        values["project"] = await state.get_project_settings(viewer.project_id)
    values["categories_json"] = json.dumps(values["project"].get("custom_categories") or [], indent=2)
    values.update(extra)
    return dash.render(request, "settings.html", viewer, **values)


@router.get("/settings", response_class=HTMLResponse)
async def settings(request: Request, viewer: Look) -> Response:
    return await page(request, viewer, new_key=None)


Handler = Callable[..., Awaitable[Response]]


def flash_errors(handler: Handler) -> Handler:
    """Show a refused change (bad input, no project) as a message on the settings page."""

    @functools.wraps(handler)
    async def run(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except PydanticValidationError as e:
            return redirect("/settings", _problems(e), "error")
        except EngramError as e:
            return redirect("/settings", e.message, "error")

    return run


async def admin(request: Request) -> tuple[Dashboard, Viewer, dict[str, Any], str]:
    """The dashboard, a viewer allowed to change things, the posted form and the viewer's project."""
    dash = dashboard_of(request)
    viewer, form = await dash.writer(request)
    if viewer.project_id is None:
        raise EngramError("engram ui has no project: API keys and webhooks belong to `engram serve`.")
    return dash, viewer, form, viewer.project_id


@router.post("/settings/keys", response_class=HTMLResponse)
@flash_errors
async def create_key(request: Request) -> Response:
    dash, viewer, form, project_id = await admin(request)
    name = str(form.get("name") or "").strip()[:200] or None
    key = await dash.server.state.create_key(project_id, name=name, read_only=form.get("read_only") == "1")
    return await page(request, viewer, new_key=key)  # shown once, never stored in clear


@router.post("/settings/keys/{key_id}/revoke")
@flash_errors
async def revoke_key(request: Request, key_id: str) -> Response:
    dash, _, _, project_id = await admin(request)
    state = dash.server.state
    own = {k.id for k in await state.list_keys(project_id)}
    if key_id not in own or not await state.revoke_key(key_id):
        return redirect("/settings", f"Key {key_id} not found or already revoked.", "error")
    return redirect("/settings", f"Key {key_id} revoked.")


@router.post("/settings/project")
@flash_errors
async def project_settings(request: Request) -> Response:
    dash, _, form, project_id = await admin(request)
    try:
        categories = json.loads(str(form.get("custom_categories") or "[]"))
        if not isinstance(categories, list):
            raise ValueError("a JSON list is expected")
    except ValueError as e:
        return redirect("/settings", f"Categories: {e}", "error")
    instructions = str(form.get("custom_instructions") or "").strip()[:20_000] or None
    changes = {"custom_instructions": instructions, "custom_categories": categories or None}
    await dash.server.state.update_project_settings(project_id, changes)
    return redirect("/settings", "Project settings saved.")


@router.post("/settings/webhooks")
@flash_errors
async def create_webhook(request: Request) -> Response:
    dash, _, form, project_id = await admin(request)
    body = WebhookBody(name=form.get("name"), url=form.get("url"), event_types=_types(form))
    hook = await dash.server.state.create_webhook(project_id, body.name, body.url, body.event_types)
    return redirect("/settings", f"Webhook {hook.name} created; its signing secret is {hook.secret}")


@router.post("/settings/webhooks/{hook_id}")
@flash_errors
async def update_webhook(request: Request, hook_id: int) -> Response:
    dash, _, form, project_id = await admin(request)
    patch = WebhookPatch(
        name=form.get("name"),
        url=form.get("url"),
        event_types=_types(form),
        is_active=form.get("is_active") == "1",
    )
    hook = await dash.server.state.update_webhook(project_id, hook_id, patch.model_dump(exclude_none=True))
    if hook is None:
        return redirect("/settings", f"Webhook {hook_id} not found.", "error")
    return redirect("/settings", f"Webhook {hook.name} saved.")


@router.post("/settings/webhooks/{hook_id}/delete")
@flash_errors
async def delete_webhook(request: Request, hook_id: int) -> Response:
    dash, _, _, project_id = await admin(request)
    gone = await dash.server.state.delete_webhook(project_id, hook_id)
    return redirect("/settings", "Webhook deleted." if gone else f"Webhook {hook_id} not found.")


@router.post("/settings/webhooks/{hook_id}/test")
@flash_errors
async def test_webhook(request: Request, hook_id: int) -> Response:
    dash, _, _, project_id = await admin(request)
    hook = await dash.server.state.get_webhook(project_id, hook_id)
    if hook is None:
        return redirect("/settings", f"Webhook {hook_id} not found.", "error")
    if not hook.is_active:
        return redirect("/settings", f"Webhook {hook.name} is paused: activate it to test it.", "error")
    body = {
        "event_details": {"id": None, "data": {"memory": "engram test delivery"}, "event": "TEST"},
        "event_type": "test",
        "project_id": project_id,
        "webhook_id": hook.id,
        "timestamp": iso(time.time()),
    }
    await dash.server.state.enqueue(project_id, "WEBHOOK", {"webhook_id": hook.id, "body": body})
    dash.server.runner.wake.set()
    return redirect("/settings", f"Test delivery to {hook.url} queued; reload to see its result.")


@router.post("/settings/import")
async def import_memories(request: Request) -> Response:
    viewer, form = await dashboard_of(request).writer(request)
    upload = form.get("file")
    try:
        raw = await upload.read() if isinstance(upload, UploadFile) else b""
        items = _import_items(json.loads(raw or b"null"))
    except ValueError as e:
        return redirect("/settings", f"Import: {e}", "error")
    added, skipped = await _import(viewer, items)
    message = f"Imported {added} memories ({skipped} skipped: already there or unusable)."
    return redirect("/settings", message)


def _types(form: dict[str, Any]) -> list[str]:
    value = form.get("event_types") or []
    return [value] if isinstance(value, str) else list(value)


def _problems(error: PydanticValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())


def _import_items(document: Any) -> list[dict[str, Any]]:
    """The memories of an export document (``{"memories": [...]}``, or a bare list of them)."""
    items = document.get("memories") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ValueError('expected an export file: {"memories": [...]}')
    if len(items) > MAX_IMPORT:
        raise ValueError(f"at most {MAX_IMPORT} memories per import")
    return [i for i in items if isinstance(i, dict)]


async def _import(viewer: Viewer, items: list[dict[str, Any]]) -> tuple[int, int]:
    """Store each memory's text as given in its scope, with its metadata (duplicates are skipped)."""
    added = skipped = 0
    for item in items:
        scope = {k: item[k] for k in SCOPE_FIELDS if isinstance(item.get(k), str) and item[k]}
        text = item.get("memory")
        if not scope or not isinstance(text, str) or not text.strip():
            skipped += 1
            continue
        try:
            result = await viewer.memory.add(
                text,
                infer=False,
                metadata=item.get("metadata") or None,
                expiration_date=item.get("expiration_date"),
                **scope,
            )
        except EngramError:
            skipped += 1
            continue
        events = [r.get("event") for r in result["results"]]
        added += events.count("ADD")
        skipped += len(events) - events.count("ADD")
    return added, skipped
