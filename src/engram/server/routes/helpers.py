"""What several route modules share: the scoped request body, scope ids, paging links, scope deletes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict

from engram.inputs import check_int, scope_from
from engram.server.deps import Server
from engram.server.errors import ApiError
from engram.service import KeyContext
from engram.types import SCOPE_FIELDS

OptQ = Annotated[str | None, Query()]
PageQ = Annotated[int, Query(ge=1, le=10**9)]
PageSizeQ = Annotated[int, Query(ge=1, description="at most the server's max_page_size (1,000)")]


class OpenBody(BaseModel):
    """Request bodies accept the extra fields real clients send (output_format, categories...)."""

    model_config = ConfigDict(extra="allow")
    org_id: Any = None
    project_id: Any = None


class Scoped(OpenBody):
    user_id: str | None = None
    agent_id: str | None = None
    app_id: str | None = None
    run_id: str | None = None
    filters: dict[str, Any] | None = None


def scope_kwargs(body: Scoped) -> dict[str, Any]:
    """Top-level ids, plus plain ids given inside ``filters`` (mem0 2.x sends them there on add)."""
    ids = top_level_ids(body)
    for key in SCOPE_FIELDS:
        value = (body.filters or {}).get(key)
        if key not in ids and isinstance(value, str):
            ids[key] = value
    return ids


def top_level_ids(body: Scoped) -> dict[str, Any]:
    """The scope ids given as top-level fields of ``body``."""
    return {k: getattr(body, k) for k in SCOPE_FIELDS if getattr(body, k) is not None}


def check_page(server: Server, page: int, page_size: int) -> int:
    """``page_size`` when within the server's ``max_page_size``; the page's offset."""
    check_int(page_size, "page_size", low=1, high=server.limits.max_page_size)
    check_int(page, "page", low=1, high=10**9)
    return (page - 1) * page_size


def page_links(request: Request, page: int, page_size: int, total: int) -> tuple[str | None, str | None]:
    """The ``next`` and ``previous`` links of a paged answer."""

    def link(p: int) -> str:
        return str(request.url.include_query_params(page=p, page_size=page_size))

    nxt = link(page + 1) if page * page_size < total else None
    prev = link(page - 1) if page > 1 else None
    return nxt, prev


def own_project(ctx: KeyContext, project_id: str) -> None:
    """A project id in a path must be the key's own (another project answers 404)."""
    if project_id != ctx.project.id:
        raise ApiError("not_found", f"project {project_id} not found", details={"field": "project_id"})


async def delete_scope(server: Server, ctx: KeyContext, ids: dict[str, Any]) -> dict[str, Any]:
    """Delete every memory of a scope (refused without one); memory_delete webhooks follow."""
    scope_from(required=True, **ids)
    result = await server.memory(ctx).delete_all(**ids)
    server.webhooks.notify()
    return {"message": "Memories deleted successfully!", "deleted": result.get("deleted", 0)}
