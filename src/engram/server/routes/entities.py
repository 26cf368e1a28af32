"""Entities: the users, agents, apps and runs that own memories in a project."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request

from engram.inputs import check_id
from engram.server.auth import check_project, require_write
from engram.server.deps import Ctx, Server, ServerDep
from engram.server.errors import not_found
from engram.server.isotime import iso
from engram.server.routes.helpers import OptQ, PageQ, PageSizeQ, check_page, delete_scope, page_links
from engram.service import Entity, KeyContext

router = APIRouter(tags=["entities"])
EntityType = Literal["user", "agent", "app", "run"]


def entity_view(ctx: KeyContext, entity: Entity, count: int) -> dict[str, Any]:
    """An entity as mem0's ``GET /v1/entities/`` lists it."""
    return {
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


async def entities_with_memories(server: Server, ctx: KeyContext) -> list[dict[str, Any]]:
    """The project's entities that still own memories."""
    memory = server.memory(ctx)
    rows = []
    for entity in await server.state.list_entities(ctx.project.id):
        scope: dict[str, Any] = {f"{entity.type}_id": entity.name}
        count = (await memory.get_all(top_k=1, **scope))["total"]
        if count:
            rows.append(entity_view(ctx, entity, count))
    return rows


@router.get("/v1/entities/")
async def list_entities(
    request: Request,
    ctx: Ctx,
    server: ServerDep,
    page: PageQ = 1,
    page_size: PageSizeQ = 100,
    org_id: OptQ = None,
    project_id: OptQ = None,
) -> dict[str, Any]:
    check_project(ctx, org_id, project_id)
    start = check_page(server, page, page_size)
    rows = await entities_with_memories(server, ctx)
    nxt, prev = page_links(request, page, page_size, len(rows))
    return {"count": len(rows), "next": nxt, "previous": prev, "results": rows[start : start + page_size]}


@router.delete("/v1/entities/{entity_type}/{entity_name}/")  # the npm client's deleteUser
@router.delete("/v2/entities/{entity_type}/{entity_name}/")
async def delete_entity(
    ctx: Ctx,
    server: ServerDep,
    entity_type: Annotated[EntityType, Path()],
    entity_name: Annotated[str, Path(min_length=1)],
    org_id: OptQ = None,
    project_id: OptQ = None,
) -> dict[str, Any]:
    require_write(ctx)
    check_project(ctx, org_id, project_id)
    ids: dict[str, Any] = {f"{entity_type}_id": check_id(entity_name, "entity_name", server.limits)}
    known = await server.state.delete_entity(ctx.project.id, entity_type, entity_name)
    count = (await server.memory(ctx).get_all(top_k=1, **ids))["total"]
    if not known and count == 0:
        raise not_found(entity_type, entity_name)
    await delete_scope(server, ctx, ids)
    return {"message": "Entity deleted successfully!"}
