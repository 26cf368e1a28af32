"""The key check (``/v1/ping/``), project settings (mem0's ``client.project.get`` / ``update``),
project create/delete and members (``client.project``) and project stats (``/v1/stats/``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from engram.server.auth import check_project, require_write
from engram.server.deps import Ctx, Server, ServerDep
from engram.server.errors import ApiError, not_found
from engram.server.isotime import iso
from engram.service import ENTITY_TYPES, KeyContext

router = APIRouter()
PROJECTS_PATH = "/api/v1/orgs/organizations/{org_id}/projects/"
PROJECT_PATH = PROJECTS_PATH + "{project_id}/"
MEMBERS_PATH = PROJECT_PATH + "members/"
MEMBERS_KEY = "_members"  # inside the project settings (hidden from the project view)
JOB_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")


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


class ProjectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2_000)


class MemberBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Literal["READER", "OWNER"] = "READER"


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


def own_org(ctx: KeyContext, org_id: str) -> None:
    """The organization in the path must be the key's own (404 otherwise)."""
    if org_id != ctx.org.id:
        raise ApiError("not_found", f"organization {org_id} not found", details={"field": "org_id"})


def own(ctx: KeyContext, org_id: str, project_id: str, *, write: bool = False) -> None:
    """The organization and project in the path must be the key's own (404 otherwise); ``write``:
    and the key may write (403 otherwise)."""
    if write:
        require_write(ctx)
    own_org(ctx, org_id)
    if project_id != ctx.project.id:
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
        **{k: v for k, v in settings.items() if not k.startswith("_")},  # "_x": server-internal
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
    own(ctx, org_id, project_id, write=True)
    check_project(ctx, body.org_id, body.project_id)
    changes = body.model_dump(exclude_unset=True, exclude={"org_id", "project_id"})
    await server.state.update_project_settings(ctx.project.id, changes)
    return {"message": "Updated project settings", **(await project_view(server, ctx, None))}


@router.post(PROJECTS_PATH, tags=["projects"], summary="Create a project in the key's organization")
async def create_project(org_id: str, ctx: Ctx, server: ServerDep, body: ProjectBody) -> dict[str, Any]:
    require_write(ctx)
    own_org(ctx, org_id)
    taken = {p.name for o, p in await server.state.list_projects() if o.id == org_id}
    if body.name in taken:
        raise ApiError("conflict", f"project {body.name!r} already exists", details={"field": "name"})
    project = await server.state.ensure_project(org_id, body.name)
    if body.description is not None:
        await server.state.update_project_settings(project.id, {"description": body.description})
    return {
        "message": "Project created successfully",
        "id": project.id,
        "project_id": project.id,
        "name": project.name,
        "description": body.description,
        "org_id": org_id,
        "created_at": iso(project.created_at),
    }


@router.delete(PROJECT_PATH, tags=["projects"], summary="Delete the key's project and its memories")
async def delete_project(org_id: str, project_id: str, ctx: Ctx, server: ServerDep) -> dict[str, Any]:
    own(ctx, org_id, project_id, write=True)
    await server.memory(ctx).reset()
    await server.state.delete_project(project_id)
    return {"message": "Project deleted successfully", "id": project_id}


async def members(server: Server, ctx: KeyContext) -> list[dict[str, str]]:
    return list((await server.state.get_project_settings(ctx.project.id)).get(MEMBERS_KEY) or [])


async def save_members(server: Server, ctx: KeyContext, people: list[dict[str, str]]) -> None:
    await server.state.update_project_settings(ctx.project.id, {MEMBERS_KEY: people})


@router.get(MEMBERS_PATH, tags=["projects"])
async def list_members(org_id: str, project_id: str, ctx: Ctx, server: ServerDep) -> dict[str, Any]:
    own(ctx, org_id, project_id)
    return {"members": await members(server, ctx)}


@router.post(MEMBERS_PATH, tags=["projects"])
async def add_member(
    org_id: str, project_id: str, ctx: Ctx, server: ServerDep, body: MemberBody
) -> dict[str, Any]:
    own(ctx, org_id, project_id, write=True)
    people = [m for m in await members(server, ctx) if m["email"] != body.email]
    await save_members(server, ctx, [*people, {"email": body.email, "role": body.role}])
    return {"message": "Member added successfully", "email": body.email, "role": body.role}


@router.put(MEMBERS_PATH, tags=["projects"])
async def update_member(
    org_id: str, project_id: str, ctx: Ctx, server: ServerDep, body: MemberBody
) -> dict[str, Any]:
    own(ctx, org_id, project_id, write=True)
    people = await members(server, ctx)
    if not any(m["email"] == body.email for m in people):
        raise not_found("member", body.email)
    changed = [{**m, "role": body.role} if m["email"] == body.email else m for m in people]
    await save_members(server, ctx, changed)
    return {"message": "Member updated successfully", "email": body.email, "role": body.role}


@router.delete(MEMBERS_PATH, tags=["projects"])
async def remove_member(
    org_id: str, project_id: str, ctx: Ctx, server: ServerDep, email: Annotated[str, Query(min_length=3)]
) -> dict[str, Any]:
    own(ctx, org_id, project_id, write=True)
    people = await members(server, ctx)
    if not any(m["email"] == email for m in people):
        raise not_found("member", email)
    await save_members(server, ctx, [m for m in people if m["email"] != email])
    return {"message": "Member removed successfully", "email": email}


@router.get("/v1/stats/", tags=["stats"], summary="Counts of memories, entities and events")
async def stats(ctx: Ctx, server: ServerDep) -> dict[str, Any]:
    entities = await server.state.list_entities(ctx.project.id)
    by_status = {}
    for status in JOB_STATUSES:
        _, count = await server.state.list_jobs(ctx.project.id, kind="ADD", status=status, limit=1, offset=0)
        by_status[status] = count
    counts = {f"total_{t}s": sum(1 for e in entities if e.type == t) for t in ENTITY_TYPES}
    return {
        **(await server.memory(ctx).stats()),
        **counts,
        "total_events": sum(by_status.values()),
        "events_by_status": by_status,
        "project_id": ctx.project.id,
        "org_id": ctx.org.id,
    }
