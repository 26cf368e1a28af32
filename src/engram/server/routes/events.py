"""Events: the async add jobs (mem0's ``GET /v1/event/{id}/``, ``GET /v1/events/`` and
``GET /v1/memories/events/``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from engram.inputs import check_id
from engram.server.deps import Ctx, ServerDep
from engram.server.errors import not_found
from engram.server.isotime import iso
from engram.server.routes.helpers import PageQ, PageSizeQ, check_page, page_links
from engram.service import Job

router = APIRouter(tags=["events"])
StatusQ = Annotated[str | None, Query(pattern="^(PENDING|RUNNING|SUCCEEDED|FAILED)$")]


def event_view(job: Job) -> dict[str, Any]:
    """An add job as mem0's ``GET /v1/event/{id}/`` answers it."""
    latency = None
    if job.completed_at is not None:
        latency = round((job.completed_at - job.created_at) * 1000, 3)
    return {
        "id": job.id,
        "event_type": job.kind,
        "status": job.status,
        "payload": job.payload.get("request", {}),
        "metadata": {"attempts": job.attempts, "idempotency_key": job.idempotency_key},
        "results": job.results or [],
        "error": job.error,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "latency": latency,
    }


@router.get("/v1/event/{event_id}/")
async def get_event(event_id: str, ctx: Ctx, server: ServerDep) -> dict[str, Any]:
    job = await server.state.get_job(ctx.project.id, check_id(event_id, "event_id", server.limits))
    if job is None or job.kind != "ADD":
        raise not_found("event", event_id)
    return event_view(job)


@router.get("/v1/memories/events/")  # mem0's Platform path; before /v1/memories/{id}/ (not an id)
@router.get("/v1/events/")
async def list_events(
    request: Request,
    ctx: Ctx,
    server: ServerDep,
    page: PageQ = 1,
    page_size: PageSizeQ = 50,
    status: StatusQ = None,
) -> dict[str, Any]:
    offset = check_page(server, page, page_size)
    jobs, total = await server.state.list_jobs(
        ctx.project.id, kind="ADD", status=status, limit=page_size, offset=offset
    )
    nxt, prev = page_links(request, page, page_size, total)
    return {"count": total, "next": nxt, "previous": prev, "results": [event_view(j) for j in jobs]}
