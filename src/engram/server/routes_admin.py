"""Ping, entities, exports, feedback and webhooks."""

from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engram.server.auth import check_project, require_write
from engram.server.errors import ApiError, not_found
from engram.server.routes_memories import Scoped, delete_scope, page_links, scope_kwargs
from engram.server.worker import iso
from engram.service import WEBHOOK_EVENT_TYPES, KeyContext, Webhook

if TYPE_CHECKING:
    from engram.server.app import Server

FEEDBACK_VALUES = ("POSITIVE", "NEGATIVE", "VERY_NEGATIVE")
EntityType = Literal["user", "agent", "app", "run"]


class ExportBody(Scoped):
    schema_: Any = Field(None, alias="schema")
    export_instructions: str | None = None


class ExportGetBody(Scoped):
    memory_export_id: str | None = None
    id: str | None = None


class ProjectPatch(BaseModel):
    """The project settings mem0's clients can change; custom instructions guide extraction."""

    model_config = ConfigDict(extra="forbid")
    custom_instructions: str | None = Field(None, max_length=20_000)
    agent_custom_instructions: str | None = Field(None, max_length=20_000)
    custom_categories: list[Any] | None = None
    multilingual: bool | None = None
    decay: bool | None = None
    memory_depth: str | None = None
    usecase_setting: Any = None
    version: str | None = None
    org_id: str | None = None  # mem0's clients send these too; they must match the path
    project_id: str | None = None


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    memory_id: str = Field(min_length=1, max_length=256)
    feedback: str | None = None
    feedback_reason: str | None = Field(None, max_length=10_000)

    @field_validator("feedback")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in FEEDBACK_VALUES:
            raise ValueError(f"must be one of {', '.join(FEEDBACK_VALUES)} or null")
        return value.upper() if value else None


def _check_event_types(value: list[str] | None) -> list[str] | None:
    if value is not None:
        unknown = [v for v in value if v not in (*WEBHOOK_EVENT_TYPES, "memory_categorize")]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {', '.join(WEBHOOK_EVENT_TYPES)}")
    return value


def _check_url(value: str | None) -> str | None:
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
        return _check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str] | None:
        return _check_event_types(value)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = Field(None, min_length=1, max_length=200)
    url: str | None = Field(None, max_length=2000)
    event_types: list[str] | None = None
    is_active: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return _check_event_types(value)


def webhook_view(hook: Webhook, *, with_secret: bool = False) -> dict[str, Any]:
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


def admin_router(server: "Server") -> APIRouter:
    router = APIRouter()
    Ctx = Annotated[KeyContext, Depends(server.auth)]
    OptQ = Annotated[str | None, Query()]

    @router.get("/v1/ping/", tags=["auth"], summary="Check a key; tells its organization and project")
    async def ping(ctx: Ctx) -> dict[str, Any]:
        return {
            "status": "ok",
            "message": "API key is valid",
            "org_id": ctx.org.id,
            "project_id": ctx.project.id,
            "org_name": ctx.org.name,
            "project_name": ctx.project.name,
            "user_email": None,
            "read_only": ctx.key.read_only,
        }

    # -- project settings (mem0's client.project.get / update) ---------------------------------------
    def own(ctx: KeyContext, org_id: str, project_id: str) -> None:
        if org_id != ctx.org.id or project_id != ctx.project.id:
            raise ApiError(
                404, "not_found", f"project {project_id} not found", details={"field": "project_id"}
            )

    async def project_view(ctx: KeyContext, fields: list[str] | None) -> dict[str, Any]:
        settings = await server.state.get_project_settings(ctx.project.id)
        view = {
            "id": ctx.project.id,
            "name": ctx.project.name,
            "org_id": ctx.org.id,
            "custom_instructions": None,
            "custom_categories": [],
            **{k: v for k, v in settings.items() if not k.startswith("_")},  # "_x": server-internal
        }
        wanted = [f for item in fields or [] for f in item.split(",") if f]
        return {k: v for k, v in view.items() if k in wanted} if wanted else view

    @router.get("/api/v1/orgs/organizations/{org_id}/projects/{project_id}/", tags=["projects"])
    async def get_project(
        org_id: str, project_id: str, ctx: Ctx, fields: Annotated[list[str] | None, Query()] = None
    ) -> dict[str, Any]:
        own(ctx, org_id, project_id)
        return await project_view(ctx, fields)

    @router.patch("/api/v1/orgs/organizations/{org_id}/projects/{project_id}/", tags=["projects"])
    async def update_project(org_id: str, project_id: str, ctx: Ctx, body: ProjectPatch) -> dict[str, Any]:
        require_write(ctx)
        own(ctx, org_id, project_id)
        check_project(ctx, body.org_id, body.project_id)
        changes = body.model_dump(exclude_unset=True, exclude={"org_id", "project_id"})
        await server.state.update_project_settings(ctx.project.id, changes)
        return {"message": "Updated project settings", **(await project_view(ctx, None))}

    # -- entities ----------------------------------------------------------------------------------
    @router.get("/v1/entities/", tags=["entities"])
    async def list_entities(
        request: Request,
        ctx: Ctx,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
        org_id: OptQ = None,
        project_id: OptQ = None,
    ) -> dict[str, Any]:
        check_project(ctx, org_id, project_id)
        memory = server.memory(ctx)
        rows = []
        for entity in await server.state.list_entities(ctx.project.id):
            scope: dict[str, Any] = {f"{entity.type}_id": entity.name}
            count = (await memory.get_all(top_k=1, **scope))["total"]
            if count == 0:
                continue
            rows.append(
                {
                    "id": str(entity.id),
                    "name": entity.name,
                    "type": entity.type,
                    "total_memories": count,
                    "owner": ctx.org.name,
                    "organization": ctx.org.id,
                    "metadata": {},
                    "created_at": iso(entity.created_at),
                    "updated_at": iso(entity.updated_at),
                }
            )
        start = (page - 1) * page_size
        nxt, prev = page_links(request, page, page_size, len(rows))
        return {"count": len(rows), "next": nxt, "previous": prev, "results": rows[start : start + page_size]}

    @router.delete("/v1/entities/{entity_type}/{entity_name}/", tags=["entities"])  # npm deleteUser
    @router.delete("/v2/entities/{entity_type}/{entity_name}/", tags=["entities"])
    async def delete_entity(
        ctx: Ctx,
        entity_type: Annotated[EntityType, Path()],
        entity_name: Annotated[str, Path(min_length=1, max_length=256)],
        org_id: OptQ = None,
        project_id: OptQ = None,
    ) -> dict[str, Any]:
        require_write(ctx)
        check_project(ctx, org_id, project_id)
        ids: dict[str, Any] = {f"{entity_type}_id": entity_name}
        known = await server.state.delete_entity(ctx.project.id, entity_type, entity_name)
        count = (await server.memory(ctx).get_all(top_k=1, **ids))["total"]
        if not known and count == 0:
            raise not_found(entity_type, entity_name)
        await delete_scope(server, ctx, ids)
        return {"message": "Entity deleted successfully!"}

    # -- exports -----------------------------------------------------------------------------------
    @router.post("/v1/exports/", tags=["exports"])
    async def create_export(ctx: Ctx, body: ExportBody) -> dict[str, Any]:
        check_project(ctx, body.org_id, body.project_id)
        ids = scope_kwargs(body)
        filters = body.filters
        found = await server.memory(ctx).get_all(filters=filters, top_k=100_000, **ids)
        recorded_filters = {**(filters or {}), **ids}
        export = await server.state.create_export(
            ctx.project.id, body.schema_, recorded_filters, {"memories": found["results"]}
        )
        return {
            "message": "Memory export request received. The export will be ready in a few seconds.",
            "id": export.id,
            "status": export.status,
        }

    @router.post("/v1/exports/get/", tags=["exports"])
    async def get_export(ctx: Ctx, body: ExportGetBody) -> dict[str, Any]:
        check_project(ctx, body.org_id, body.project_id)
        export = await server.state.get_export(ctx.project.id, body.memory_export_id or body.id)
        if export is None:
            raise not_found("export", body.memory_export_id or body.id or "(latest)")
        result = export.result if isinstance(export.result, dict) else {"data": export.result}
        return {"id": export.id, "status": export.status, "created_at": iso(export.created_at), **result}

    # -- feedback ----------------------------------------------------------------------------------
    @router.post("/v1/feedback/", tags=["feedback"])
    async def feedback(ctx: Ctx, body: FeedbackBody) -> dict[str, Any]:
        require_write(ctx)
        if await server.memory(ctx).get(body.memory_id) is None:
            raise not_found("memory", body.memory_id)
        return await server.state.add_feedback(
            ctx.project.id, body.memory_id, body.feedback, body.feedback_reason
        )

    # -- webhooks ----------------------------------------------------------------------------------
    def own_project(ctx: KeyContext, project_id: str) -> None:
        if project_id != ctx.project.id:
            raise ApiError(
                404, "not_found", f"project {project_id} not found", details={"field": "project_id"}
            )

    @router.get("/api/v1/webhooks/projects/{project_id}/", tags=["webhooks"])
    async def list_webhooks(project_id: str, ctx: Ctx) -> list[dict[str, Any]]:
        own_project(ctx, project_id)
        return [webhook_view(h) for h in await server.state.list_webhooks(ctx.project.id)]

    @router.post("/api/v1/webhooks/projects/{project_id}/", tags=["webhooks"])
    async def create_webhook(project_id: str, ctx: Ctx, body: WebhookBody) -> dict[str, Any]:
        require_write(ctx)
        own_project(ctx, project_id)
        hook = await server.state.create_webhook(ctx.project.id, body.name, body.url, body.event_types)
        return webhook_view(hook, with_secret=True)

    async def own_hook(ctx: KeyContext, webhook_id: int) -> Webhook:
        hook = await server.state.get_webhook(ctx.project.id, webhook_id)
        if hook is None:
            raise not_found("webhook", webhook_id)
        return hook

    @router.put("/api/v1/webhooks/{webhook_id}/", tags=["webhooks"])
    async def update_webhook(webhook_id: int, ctx: Ctx, body: WebhookPatch) -> dict[str, Any]:
        require_write(ctx)
        await own_hook(ctx, webhook_id)
        hook = await server.state.update_webhook(
            ctx.project.id, webhook_id, body.model_dump(exclude_none=True)
        )
        if hook is None:
            raise not_found("webhook", webhook_id)
        return {"message": "Webhook updated successfully", **webhook_view(hook)}

    @router.delete("/api/v1/webhooks/{webhook_id}/", tags=["webhooks"])
    async def delete_webhook(webhook_id: int, ctx: Ctx) -> dict[str, Any]:
        require_write(ctx)
        await own_hook(ctx, webhook_id)
        await server.state.delete_webhook(ctx.project.id, webhook_id)
        return {"message": "Webhook deleted successfully"}

    @router.get("/api/v1/webhooks/{webhook_id}/deliveries/", tags=["webhooks"])
    async def webhook_deliveries(webhook_id: int, ctx: Ctx) -> list[dict[str, Any]]:
        await own_hook(ctx, webhook_id)
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

    return router
