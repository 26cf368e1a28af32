"""The key check (``/v1/ping/``) and project settings (mem0's ``client.project.get`` / ``update``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from engram.server.auth import check_project, require_write
from engram.server.deps import Ctx, Server, ServerDep
from engram.server.errors import ApiError
from engram.service import KeyContext

router = APIRouter()
PROJECT_PATH = "/api/v1/orgs/organizations/{org_id}/projects/{project_id}/"


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


def own(ctx: KeyContext, org_id: str, project_id: str) -> None:
    """The organization and project in the path must be the key's own (404 otherwise)."""
    if org_id != ctx.org.id or project_id != ctx.project.id:
        raise ApiError("not_found", f"project {project_id} not found", details={"field": "project_id"})


async def project_view(server: Server, ctx: KeyContext, fields: list[str] | None) -> dict[str, Any]:
    """The project and its settings, restricted to ``fields`` (comma-separated, repeatable) if given."""
    settings = await server.state.get_project_settings(ctx.project.id)
    view = {
        "id": ctx.project.id,
        "name": ctx.project.name,
        "org_id": ctx.org.id,
        "custom_instructions": None,
        "custom_categories": [],
        **settings,
    }
    wanted = [f for item in fields or [] for f in item.split(",") if f]
    return {k: v for k, v in view.items() if k in wanted} if wanted else view


@router.get(PROJECT_PATH, tags=["projects"])
async def get_project(
    org_id: str,
    project_id: str,
    ctx: Ctx,
    server: ServerDep,
    fields: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    own(ctx, org_id, project_id)
    return await project_view(server, ctx, fields)


@router.patch(PROJECT_PATH, tags=["projects"])
async def update_project(
    org_id: str, project_id: str, ctx: Ctx, server: ServerDep, body: ProjectPatch
) -> dict[str, Any]:
    require_write(ctx)
    own(ctx, org_id, project_id)
    check_project(ctx, body.org_id, body.project_id)
    changes = body.model_dump(exclude_unset=True, exclude={"org_id", "project_id"})
    await server.state.update_project_settings(ctx.project.id, changes)
    return {"message": "Updated project settings", **(await project_view(server, ctx, None))}
