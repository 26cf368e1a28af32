"""Webhooks of a project: create, list, change, delete, and their delivery log."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engram.server.auth import require_write
from engram.server.deps import Ctx, Server, ServerDep
from engram.server.errors import not_found
from engram.server.isotime import iso
from engram.server.routes.helpers import own_project
from engram.service import WEBHOOK_EVENT_TYPES, KeyContext, Webhook

router = APIRouter(tags=["webhooks"])
WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def check_event_types(value: list[str] | None) -> list[str] | None:
    """Known event types only (mem0's ``memory_categorize`` is accepted and never fires)."""
    if value is not None:
        unknown = [v for v in value if v not in (*WEBHOOK_EVENT_TYPES, "memory_categorize")]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {', '.join(WEBHOOK_EVENT_TYPES)}")
    return value


def check_url(value: str | None) -> str | None:
    """An absolute http(s) URL."""
    if value is not None:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL")
    return value


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=lambda: list(WEBHOOK_EVENT_TYPES))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str | None:
        return check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str] | None:
        return check_event_types(value)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = Field(None, min_length=1, max_length=200)
    url: str | None = Field(None, max_length=2000)
    event_types: list[str] | None = None
    is_active: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return check_event_types(value)


def webhook_view(hook: Webhook, *, with_secret: bool = False) -> dict[str, Any]:
    """A webhook as mem0's clients read it (the secret only when it is created)."""
    view: dict[str, Any] = {
        "webhook_id": hook.id,
        "name": hook.name,
        "url": hook.url,
        "project": hook.project_id,
        "event_types": hook.event_types,
        "is_active": hook.is_active,
        "created_at": iso(hook.created_at),
        "updated_at": iso(hook.updated_at),
    }
    if with_secret:
        view["secret"] = hook.secret
    return view


async def own_hook(server: Server, ctx: KeyContext, webhook_id: int) -> Webhook:
    """The caller's webhook ``webhook_id`` (404 for another project's, as for a missing one)."""
    hook = await server.state.get_webhook(ctx.project.id, webhook_id)
    if hook is None:
        raise not_found("webhook", webhook_id)
    return hook


@router.get("/api/v1/webhooks/projects/{project_id}/")
async def list_webhooks(project_id: str, ctx: Ctx, server: ServerDep) -> list[dict[str, Any]]:
    own_project(ctx, project_id)
    return [webhook_view(h) for h in await server.state.list_webhooks(ctx.project.id)]


@router.post("/api/v1/webhooks/projects/{project_id}/")
async def create_webhook(project_id: str, ctx: Ctx, server: ServerDep, body: WebhookBody) -> dict[str, Any]:
    require_write(ctx)
    own_project(ctx, project_id)
    hook = await server.state.create_webhook(ctx.project.id, body.name, body.url, body.event_types)
    return webhook_view(hook, with_secret=True)


@router.put("/api/v1/webhooks/{webhook_id}/")
async def update_webhook(
    webhook_id: WebhookId, ctx: Ctx, server: ServerDep, body: WebhookPatch
) -> dict[str, Any]:
    require_write(ctx)
    await own_hook(server, ctx, webhook_id)
    hook = await server.state.update_webhook(ctx.project.id, webhook_id, body.model_dump(exclude_none=True))
    if hook is None:
        raise not_found("webhook", webhook_id)
    return {"message": "Webhook updated successfully", **webhook_view(hook)}


@router.delete("/api/v1/webhooks/{webhook_id}/")
async def delete_webhook(webhook_id: WebhookId, ctx: Ctx, server: ServerDep) -> dict[str, Any]:
    require_write(ctx)
    await own_hook(server, ctx, webhook_id)
    await server.state.delete_webhook(ctx.project.id, webhook_id)
    return {"message": "Webhook deleted successfully"}


@router.get("/api/v1/webhooks/{webhook_id}/deliveries/")
async def webhook_deliveries(webhook_id: WebhookId, ctx: Ctx, server: ServerDep) -> list[dict[str, Any]]:
    await own_hook(server, ctx, webhook_id)
    return [
        {
            "delivery_id": d.job_id,
            "attempt": d.attempt,
            "status_code": d.status_code,
            "error": d.error,
            "created_at": iso(d.created_at),
        }
        for d in await server.state.list_deliveries(webhook_id)
    ]
