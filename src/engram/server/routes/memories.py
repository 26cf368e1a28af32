"""Searching, listing, reading, updating and deleting memories (mem0's ``/v1``-``/v3`` memory routes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import Field

from engram.retrieval import search_reranking_if_possible
from engram.server.auth import check_project, require_write
from engram.server.deps import Ctx, Server, ServerDep
from engram.server.errors import not_found
from engram.server.routes.helpers import (
    OpenBody,
    OptQ,
    Scoped,
    check_page,
    delete_scope,
    page_links,
    top_level_ids,
)
from engram.service import KeyContext

router = APIRouter(tags=["memories"])
PageQ = Annotated[int | None, Query(ge=1, le=10**9)]
SizeQ = Annotated[int | None, Query(ge=1, description="at most the server's max_page_size (1,000)")]


class SearchBody(Scoped):
    query: str
    top_k: int | None = Field(None, ge=1, description="at most the server's max_page_size (1,000)")
    limit: int | None = Field(None, ge=1, description="mem0 1.x name of top_k")
    threshold: float | None = Field(None, ge=0, le=1)
    rerank: bool = False
    rewrite: bool | None = Field(None, description="also search the LLM's variants of the query (Engram)")
    explain: bool = False
    include_superseded: bool = False
    show_expired: bool = False


class ListBody(Scoped):
    page: int | None = Field(None, ge=1, le=10**9)
    page_size: int | None = Field(None, ge=1, description="at most the server's max_page_size (1,000)")
    include_superseded: bool = False
    show_expired: bool = False


class UpdateBody(OpenBody):
    text: str | None = None
    data: str | None = None
    metadata: dict[str, Any] | None = None
    timestamp: int | float | str | None = None
    expiration_date: str | None = None


# -- search and list ------------------------------------------------------------------------------
async def search(server: Server, ctx: KeyContext, body: SearchBody) -> dict[str, Any]:
    """Ranked memories of the caller's project. ``rerank`` uses the configured reranker, else the LLM;
    with neither, plain ranking and a ``"rerank"`` note saying so (mem0's clients always may send it)."""
    check_project(ctx, body.org_id, body.project_id)
    args: dict[str, Any] = {
        "filters": body.filters,
        "top_k": body.top_k or body.limit or 20,
        "threshold": body.threshold,
        "explain": body.explain,
        "rewrite": body.rewrite,
        "include_superseded": body.include_superseded,
        "show_expired": body.show_expired,
        **top_level_ids(body),
    }
    return await search_reranking_if_possible(server.memory(ctx), body.query, rerank=body.rerank, **args)


@router.post("/v3/memories/search/")
@router.post("/v2/memories/search/", summary="Search memories (mem0 1.x clients)")
async def search_memories(ctx: Ctx, server: ServerDep, body: SearchBody) -> dict[str, Any]:
    return await search(server, ctx, body)


async def list_memories(
    server: Server, request: Request, ctx: KeyContext, body: ListBody, page: int | None, size: int | None
) -> dict[str, Any]:
    """One page of the caller's memories (query parameters win over the body's paging)."""
    check_project(ctx, body.org_id, body.project_id)
    page = page or body.page or 1
    size = size or body.page_size or 100
    offset = check_page(server, page, size)
    found = await server.memory(ctx).get_all(
        filters=body.filters,
        top_k=size,
        offset=offset,
        include_superseded=body.include_superseded,
        show_expired=body.show_expired,
        **top_level_ids(body),
    )
    nxt, prev = page_links(request, page, size, found["total"])
    return {"count": found["total"], "next": nxt, "previous": prev, "results": found["results"]}


@router.post("/v3/memories/", summary="List memories (paged)")
@router.post("/v2/memories/", summary="List memories (mem0 1.x clients)")
async def list_page(
    request: Request,
    ctx: Ctx,
    server: ServerDep,
    body: Annotated[ListBody | None, Body()] = None,
    page: PageQ = None,
    page_size: SizeQ = None,
) -> dict[str, Any]:
    return await list_memories(server, request, ctx, body or ListBody(), page, page_size)


# -- one memory -----------------------------------------------------------------------------------
@router.get("/v1/memories/{memory_id}/")
async def get_memory(
    memory_id: str, ctx: Ctx, server: ServerDep, org_id: OptQ = None, project_id: OptQ = None
) -> dict[str, Any]:
    check_project(ctx, org_id, project_id)
    item = await server.memory(ctx).get(memory_id)
    if item is None:
        raise not_found("memory", memory_id)
    return item


@router.put("/v1/memories/{memory_id}/")
async def update_memory(
    memory_id: str,
    ctx: Ctx,
    server: ServerDep,
    body: UpdateBody,
    org_id: OptQ = None,
    project_id: OptQ = None,
) -> dict[str, Any]:
    require_write(ctx)
    check_project(ctx, org_id or body.org_id, project_id or body.project_id)
    text = body.text if body.text is not None else body.data
    result = await server.memory(ctx).update(memory_id, text=text, metadata=body.metadata)
    server.webhooks.notify()
    return result


@router.delete("/v1/memories/{memory_id}/")
async def delete_memory(
    memory_id: str, ctx: Ctx, server: ServerDep, org_id: OptQ = None, project_id: OptQ = None
) -> dict[str, Any]:
    require_write(ctx)
    check_project(ctx, org_id, project_id)
    memory = server.memory(ctx)
    item = await memory.get(memory_id)
    if item is None:
        raise not_found("memory", memory_id)
    await memory.delete(memory_id)
    server.webhooks.notify()
    return {"message": "Memory deleted successfully!", "id": memory_id}


@router.get("/v1/memories/{memory_id}/history/")
async def memory_history(
    memory_id: str, ctx: Ctx, server: ServerDep, org_id: OptQ = None, project_id: OptQ = None
) -> list[dict[str, Any]]:
    check_project(ctx, org_id, project_id)
    memory = server.memory(ctx)
    entries = await memory.history(memory_id)
    if not entries and await memory.get(memory_id) is None:
        raise not_found("memory", memory_id)
    return entries


@router.delete("/v1/memories/", summary="Delete every memory of a scope")
async def delete_all(
    ctx: Ctx,
    server: ServerDep,
    user_id: OptQ = None,
    agent_id: OptQ = None,
    app_id: OptQ = None,
    run_id: OptQ = None,
    org_id: OptQ = None,
    project_id: OptQ = None,
) -> dict[str, Any]:
    require_write(ctx)
    check_project(ctx, org_id, project_id)
    ids = {"user_id": user_id, "agent_id": agent_id, "app_id": app_id, "run_id": run_id}
    return await delete_scope(server, ctx, {k: v for k, v in ids.items() if v})
