"""Memory exports (mem0's ``create_memory_export`` / ``get_memory_export``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from engram.inputs import check_id
from engram.server.auth import check_project
from engram.server.deps import Ctx, ServerDep
from engram.server.errors import not_found
from engram.server.isotime import iso
from engram.server.routes.helpers import Scoped, scope_kwargs
from engram.transfer import export_memories

router = APIRouter(tags=["exports"])


class ExportBody(Scoped):
    schema_: Any = Field(None, alias="schema")
    export_instructions: str | None = None


class ExportGetBody(Scoped):
    memory_export_id: str | None = None
    id: str | None = None


@router.post("/v1/exports/")
async def create_export(ctx: Ctx, server: ServerDep, body: ExportBody) -> dict[str, Any]:
    check_project(ctx, body.org_id, body.project_id)
    ids = scope_kwargs(body)
    filters = body.filters
    recorded_filters = {**(filters or {}), **ids}
    memories = await export_memories(server.memory(ctx), recorded_filters)  # what `engram export` writes
    export = await server.state.create_export(
        ctx.project.id, body.schema_, recorded_filters, {"memories": memories}
    )
    return {
        "message": "Memory export request received. The export will be ready in a few seconds.",
        "id": export.id,
        "status": export.status,
    }


@router.post("/v1/exports/get/")
async def get_export(ctx: Ctx, server: ServerDep, body: ExportGetBody) -> dict[str, Any]:
    check_project(ctx, body.org_id, body.project_id)
    export_id = body.memory_export_id or body.id
    if export_id is not None:
        check_id(export_id, "memory_export_id", server.limits)
    export = await server.state.get_export(ctx.project.id, export_id)
    if export is None:
        raise not_found("export", export_id or "(latest)")
    result = export.result if isinstance(export.result, dict) else {"data": export.result}
    return {"id": export.id, "status": export.status, "created_at": iso(export.created_at), **result}
