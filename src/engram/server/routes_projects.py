"""Project create/delete and members (mem0's ``client.project``) and project stats."""

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from engram.server.auth import require_write
from engram.server.errors import ApiError, not_found
from engram.server.worker import iso
from engram.service import ENTITY_TYPES, KeyContext

if TYPE_CHECKING:
    from engram.server.app import Server

MEMBERS_KEY = "_members"  # inside the project settings (hidden from the project view)
JOB_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")


class ProjectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2_000)


class MemberBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Literal["READER", "OWNER"] = "READER"


def projects_router(server: "Server") -> APIRouter:
    router = APIRouter()
    Ctx = Annotated[KeyContext, Depends(server.auth)]
    base = "/api/v1/orgs/organizations/{org_id}/projects"

    def own_org(ctx: KeyContext, org_id: str) -> None:
        if org_id != ctx.org.id:
            raise ApiError(404, "not_found", f"organization {org_id} not found", details={"field": "org_id"})

    def own(ctx: KeyContext, org_id: str, project_id: str) -> None:
        own_org(ctx, org_id)
        if project_id != ctx.project.id:
            raise ApiError(
                404, "not_found", f"project {project_id} not found", details={"field": "project_id"}
            )

    @router.post(f"{base}/", tags=["projects"], summary="Create a project in the key's organization")
    async def create_project(org_id: str, ctx: Ctx, body: ProjectBody) -> dict[str, Any]:
        require_write(ctx)
        own_org(ctx, org_id)
        taken = {p.name for o, p in await server.state.list_projects() if o.id == org_id}
        if body.name in taken:
            raise ApiError(
                409, "conflict", f"project {body.name!r} already exists", details={"field": "name"}
            )
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

    @router.delete(f"{base}/{{project_id}}/", tags=["projects"], summary="Delete the key's project")
    async def delete_project(org_id: str, project_id: str, ctx: Ctx) -> dict[str, Any]:
        require_write(ctx)
        own(ctx, org_id, project_id)
        await server.memory(ctx).reset()
        await server.state.delete_project(project_id)
        return {"message": "Project deleted successfully", "id": project_id}

    async def members(ctx: KeyContext) -> list[dict[str, str]]:
        return list((await server.state.get_project_settings(ctx.project.id)).get(MEMBERS_KEY) or [])

    async def save(ctx: KeyContext, people: list[dict[str, str]]) -> None:
        await server.state.update_project_settings(ctx.project.id, {MEMBERS_KEY: people})

    @router.get(f"{base}/{{project_id}}/members/", tags=["projects"])
    async def list_members(org_id: str, project_id: str, ctx: Ctx) -> dict[str, Any]:
        own(ctx, org_id, project_id)
        return {"members": await members(ctx)}

    @router.post(f"{base}/{{project_id}}/members/", tags=["projects"])
    async def add_member(org_id: str, project_id: str, ctx: Ctx, body: MemberBody) -> dict[str, Any]:
        require_write(ctx)
        own(ctx, org_id, project_id)
        people = [m for m in await members(ctx) if m["email"] != body.email]
        await save(ctx, [*people, {"email": body.email, "role": body.role}])
        return {"message": "Member added successfully", "email": body.email, "role": body.role}

    @router.put(f"{base}/{{project_id}}/members/", tags=["projects"])
    async def update_member(org_id: str, project_id: str, ctx: Ctx, body: MemberBody) -> dict[str, Any]:
        require_write(ctx)
        own(ctx, org_id, project_id)
        people = await members(ctx)
        if not any(m["email"] == body.email for m in people):
            raise not_found("member", body.email)
        await save(ctx, [{**m, "role": body.role} if m["email"] == body.email else m for m in people])
        return {"message": "Member updated successfully", "email": body.email, "role": body.role}

    @router.delete(f"{base}/{{project_id}}/members/", tags=["projects"])
    async def remove_member(
        org_id: str, project_id: str, ctx: Ctx, email: Annotated[str, Query(min_length=3)]
    ) -> dict[str, Any]:
        require_write(ctx)
        own(ctx, org_id, project_id)
        people = await members(ctx)
        if not any(m["email"] == email for m in people):
            raise not_found("member", email)
        await save(ctx, [m for m in people if m["email"] != email])
        return {"message": "Member removed successfully", "email": email}

    @router.get("/v1/stats/", tags=["stats"], summary="Counts of memories, entities and events")
    async def stats(ctx: Ctx) -> dict[str, Any]:
        entities = await server.state.list_entities(ctx.project.id)
        by_status = {}
        for status in JOB_STATUSES:
            _, count = await server.state.list_jobs(
                ctx.project.id, kind="ADD", status=status, limit=1, offset=0
            )
            by_status[status] = count
        counts = {f"total_{t}s": sum(1 for e in entities if e.type == t) for t in ENTITY_TYPES}
        memory_stats = await server.memory(ctx).stats()
        return {
            **memory_stats,
            **counts,
            "total_events": sum(by_status.values()),
            "events_by_status": by_status,
            "project_id": ctx.project.id,
            "org_id": ctx.org.id,
        }

    return router
