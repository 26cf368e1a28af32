"""Memory routes, shaped as mem0's Platform API answers its Python (1.x, 2.x) and npm clients."""

import asyncio
import hashlib
import json
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from engram.errors import ConfigError
from engram.inputs import clean_metadata, parse_expiration, parse_messages, parse_timestamp, scope_from
from engram.server.auth import check_project, require_write
from engram.server.errors import ApiError, not_found
from engram.server.worker import iso
from engram.service import Job, KeyContext
from engram.types import SCOPE_FIELDS

if TYPE_CHECKING:
    from engram.server.app import Server

QUEUED = "Memory processing has been queued for background execution"
_ERROR_STATUS = {
    "validation_error": 422,
    "invalid_filter": 422,
    "scope_required": 400,
    "config_error": 400,
    "inference_unavailable": 400,
    "extraction_failed": 502,
    "provider_error": 502,
    "rate_limited": 503,
    "provider_timeout": 504,
}


class _Open(BaseModel):
    """Request bodies accept the extra fields real clients send (output_format, categories...)."""

    model_config = ConfigDict(extra="allow")
    org_id: Any = None
    project_id: Any = None


class Scoped(_Open):
    user_id: str | None = None
    agent_id: str | None = None
    app_id: str | None = None
    run_id: str | None = None
    filters: dict[str, Any] | None = None


class AddBody(Scoped):
    messages: list[dict[str, Any]] | dict[str, Any] | str
    metadata: dict[str, Any] | None = None
    infer: bool = True
    async_mode: bool = True
    timestamp: int | float | str | None = None
    expiration_date: str | None = None
    prompt: str | None = None
    custom_instructions: str | None = None


class SearchBody(Scoped):
    query: str
    top_k: int | None = Field(None, ge=1, le=1000)
    limit: int | None = Field(None, ge=1, le=1000)
    threshold: float | None = Field(None, ge=0, le=1)
    rerank: bool = False
    explain: bool = False
    include_superseded: bool = False
    show_expired: bool = False


class ListBody(Scoped):
    page: int | None = Field(None, ge=1)
    page_size: int | None = Field(None, ge=1, le=1000)
    include_superseded: bool = False
    show_expired: bool = False


class UpdateBody(_Open):
    text: str | None = None
    data: str | None = None
    metadata: dict[str, Any] | None = None
    timestamp: int | float | str | None = None
    expiration_date: str | None = None


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    memory_id: str = Field(min_length=1, max_length=256)
    text: str | None = None
    metadata: dict[str, Any] | None = None


class BatchBody(BaseModel):
    memories: list[BatchItem] = Field(min_length=1, max_length=1000)


def scope_kwargs(body: Scoped) -> dict[str, Any]:
    """Top-level ids, plus plain ids given inside ``filters`` (mem0 2.x sends them there on add)."""
    ids = {k: getattr(body, k) for k in SCOPE_FIELDS if getattr(body, k) is not None}
    for key in SCOPE_FIELDS:
        value = (body.filters or {}).get(key)
        if key not in ids and isinstance(value, str):
            ids[key] = value
    return ids


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


def page_links(request: Request, page: int, page_size: int, total: int) -> tuple[str | None, str | None]:
    def link(p: int) -> str:
        return str(request.url.include_query_params(page=p, page_size=page_size))

    nxt = link(page + 1) if page * page_size < total else None
    prev = link(page - 1) if page > 1 else None
    return nxt, prev


async def delete_scope(server: "Server", ctx: KeyContext, ids: dict[str, Any]) -> dict[str, Any]:
    """Delete every memory of a scope (refused without one), firing memory_delete webhooks."""
    scope_from(required=True, **ids)
    memory = server.memory(ctx)
    doomed: list[dict[str, Any]] = []
    hooks = await server.state.list_webhooks(ctx.project.id)
    if any(h.is_active and (not h.event_types or "memory_delete" in h.event_types) for h in hooks):
        doomed = (await memory.get_all(top_k=100_000, **ids))["results"]
    result = await memory.delete_all(**ids)
    await server.runner.fire(ctx.project.id, [("DELETE", {**m, "event": "DELETE"}) for m in doomed])
    return {"message": "Memories deleted successfully!", "deleted": result.get("deleted", 0)}


def memories_router(server: "Server") -> APIRouter:
    router = APIRouter()
    Ctx = Annotated[KeyContext, Depends(server.auth)]

    # -- add ----------------------------------------------------------------------------------
    async def add(
        request: Request, ctx: KeyContext, body: AddBody, idem: str | None, v1: bool
    ) -> dict[str, Any]:
        require_write(ctx)
        check_project(ctx, body.org_id, body.project_id)
        ids = scope_kwargs(body)
        scope_from(required=True, **ids)
        parse_messages(body.messages)
        clean_metadata(body.metadata)
        parse_timestamp(body.timestamp)
        parse_expiration(body.expiration_date)
        kwargs: dict[str, Any] = {
            "messages": body.messages,
            **ids,
            "metadata": body.metadata,
            "infer": body.infer,
            "timestamp": body.timestamp,
            "expiration_date": body.expiration_date,
            "prompt": body.prompt or body.custom_instructions,
        }
        request_json = body.model_dump(exclude_none=True, exclude={"org_id", "project_id"})
        digest = None
        if idem is not None:
            if not idem.strip() or len(idem) > 255:
                raise ApiError(
                    422,
                    "validation_error",
                    "Idempotency-Key must be 1-255 characters",
                    details={"field": "Idempotency-Key"},
                )
            canonical = json.dumps([request.url.path, request_json], sort_keys=True, default=str)
            digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        settings = server.settings
        sync = not body.async_mode
        enqueued = await server.state.enqueue(
            ctx.project.id,
            "ADD",
            {"request": request_json, "kwargs": {k: v for k, v in kwargs.items() if v is not None}},
            idempotency_key=idem,
            request_hash=digest,
            claim_as=server.request_worker_id if sync else None,
            lease_seconds=settings.lease_seconds,
        )
        job = enqueued.job
        if not sync:
            server.runner.wake.set()
            answer = {"message": QUEUED, "status": job.status, "event_id": job.id}
            return {"results": [answer], **answer} if v1 else answer
        if enqueued.created:
            await server.runner.process(job, server.request_worker_id)
        job = await wait_terminal(job)
        if job.status == "FAILED":
            code = (job.error or "add_failed").split(":", 1)[0]
            raise ApiError(
                _ERROR_STATUS.get(code, 500), code, job.error or "add failed", details={"event_id": job.id}
            )
        return {"results": job.results or [], "event_id": job.id}

    async def wait_terminal(job: Job) -> Job:
        deadline = time.monotonic() + server.settings.sync_add_timeout
        while job.status not in ("SUCCEEDED", "FAILED"):
            if time.monotonic() > deadline:
                raise ApiError(504, "timeout", "The add did not finish in time", details={"event_id": job.id})
            await asyncio.sleep(0.05)
            fresh = await server.state.get_job(job.project_id, job.id)
            assert fresh is not None
            job = fresh
        return job

    @router.post("/v3/memories/add/", tags=["memories"], summary="Add memories (mem0 2.x clients)")
    async def add_v3(
        request: Request, ctx: Ctx, body: AddBody, idempotency_key: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        return await add(request, ctx, body, idempotency_key, v1=False)

    @router.post("/v1/memories/", tags=["memories"], summary="Add memories (mem0 1.x clients)")
    async def add_v1(
        request: Request, ctx: Ctx, body: AddBody, idempotency_key: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        return await add(request, ctx, body, idempotency_key, v1=True)

    # -- events -------------------------------------------------------------------------------
    @router.get("/v1/event/{event_id}/", tags=["events"])
    async def get_event(event_id: str, ctx: Ctx) -> dict[str, Any]:
        job = await server.state.get_job(ctx.project.id, event_id)
        if job is None or job.kind != "ADD":
            raise not_found("event", event_id)
        return event_view(job)

    @router.get("/v1/memories/events/", tags=["events"])  # before /v1/memories/{id}/: not an id
    @router.get("/v1/events/", tags=["events"])
    async def list_events(
        request: Request,
        ctx: Ctx,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        status: Annotated[str | None, Query(pattern="^(PENDING|RUNNING|SUCCEEDED|FAILED)$")] = None,
    ) -> dict[str, Any]:
        jobs, total = await server.state.list_jobs(
            ctx.project.id, kind="ADD", status=status, limit=page_size, offset=(page - 1) * page_size
        )
        nxt, prev = page_links(request, page, page_size, total)
        return {"count": total, "next": nxt, "previous": prev, "results": [event_view(j) for j in jobs]}

    # -- search and list --------------------------------------------------------------------------
    async def search(ctx: KeyContext, body: SearchBody) -> dict[str, Any]:
        check_project(ctx, body.org_id, body.project_id)
        args: dict[str, Any] = {
            "filters": body.filters,
            "top_k": body.top_k or body.limit or 20,
            "threshold": body.threshold,
            "explain": body.explain,
            "include_superseded": body.include_superseded,
            "show_expired": body.show_expired,
            **{k: getattr(body, k) for k in SCOPE_FIELDS if getattr(body, k) is not None},
        }
        memory = server.memory(ctx)
        try:
            return await memory.search(body.query, rerank=body.rerank, **args)
        except ConfigError:
            if not body.rerank:
                raise
            return await memory.search(body.query, **args)  # no reranker configured: plain ranking

    @router.post("/v3/memories/search/", tags=["memories"])
    async def search_v3(ctx: Ctx, body: SearchBody) -> dict[str, Any]:
        return await search(ctx, body)

    @router.post("/v2/memories/search/", tags=["memories"])
    async def search_v2(ctx: Ctx, body: SearchBody) -> dict[str, Any]:
        return await search(ctx, body)

    async def list_memories(
        request: Request, ctx: KeyContext, body: ListBody, page: int | None, page_size: int | None
    ) -> dict[str, Any]:
        check_project(ctx, body.org_id, body.project_id)
        page = page or body.page or 1
        size = page_size or body.page_size or 100
        found = await server.memory(ctx).get_all(
            filters=body.filters,
            top_k=size,
            offset=(page - 1) * size,
            include_superseded=body.include_superseded,
            show_expired=body.show_expired,
            **{k: getattr(body, k) for k in SCOPE_FIELDS if getattr(body, k) is not None},
        )
        nxt, prev = page_links(request, page, size, found["total"])
        return {"count": found["total"], "next": nxt, "previous": prev, "results": found["results"]}

    PageQ = Annotated[int | None, Query(ge=1)]
    SizeQ = Annotated[int | None, Query(ge=1, le=1000)]

    @router.post("/v3/memories/", tags=["memories"], summary="List memories (paged)")
    async def list_v3(
        request: Request,
        ctx: Ctx,
        body: Annotated[ListBody | None, Body()] = None,
        page: PageQ = None,
        page_size: SizeQ = None,
    ) -> dict[str, Any]:
        return await list_memories(request, ctx, body or ListBody(), page, page_size)

    @router.post("/v2/memories/", tags=["memories"], summary="List memories (mem0 1.x clients)")
    async def list_v2(
        request: Request,
        ctx: Ctx,
        body: Annotated[ListBody | None, Body()] = None,
        page: PageQ = None,
        page_size: SizeQ = None,
    ) -> dict[str, Any]:
        return await list_memories(request, ctx, body or ListBody(), page, page_size)

    # -- one memory -------------------------------------------------------------------------------
    OrgQ = Annotated[str | None, Query()]

    @router.get("/v1/memories/{memory_id}/", tags=["memories"])
    async def get_memory(
        memory_id: str, ctx: Ctx, org_id: OrgQ = None, project_id: OrgQ = None
    ) -> dict[str, Any]:
        check_project(ctx, org_id, project_id)
        item = await server.memory(ctx).get(memory_id)
        if item is None:
            raise not_found("memory", memory_id)
        return item

    @router.put("/v1/memories/{memory_id}/", tags=["memories"])
    async def update_memory(
        memory_id: str, ctx: Ctx, body: UpdateBody, org_id: OrgQ = None, project_id: OrgQ = None
    ) -> dict[str, Any]:
        require_write(ctx)
        check_project(ctx, org_id or body.org_id, project_id or body.project_id)
        text = body.text if body.text is not None else body.data
        result = await server.memory(ctx).update(memory_id, text=text, metadata=body.metadata)
        await server.runner.fire(ctx.project.id, [("UPDATE", {**result, "event": "UPDATE"})])
        return result

    @router.delete("/v1/memories/{memory_id}/", tags=["memories"])
    async def delete_memory(
        memory_id: str, ctx: Ctx, org_id: OrgQ = None, project_id: OrgQ = None
    ) -> dict[str, Any]:
        require_write(ctx)
        check_project(ctx, org_id, project_id)
        memory = server.memory(ctx)
        item = await memory.get(memory_id)
        if item is None:
            raise not_found("memory", memory_id)
        await memory.delete(memory_id)
        await server.runner.fire(ctx.project.id, [("DELETE", {**item, "event": "DELETE"})])
        return {"message": "Memory deleted successfully!", "id": memory_id}

    @router.get("/v1/memories/{memory_id}/history/", tags=["memories"])
    async def memory_history(
        memory_id: str, ctx: Ctx, org_id: OrgQ = None, project_id: OrgQ = None
    ) -> list[dict[str, Any]]:
        check_project(ctx, org_id, project_id)
        memory = server.memory(ctx)
        entries = await memory.history(memory_id)
        if not entries and await memory.get(memory_id) is None:
            raise not_found("memory", memory_id)
        return entries

    @router.delete("/v1/memories/", tags=["memories"], summary="Delete every memory of a scope")
    async def delete_all(
        ctx: Ctx,
        user_id: OrgQ = None,
        agent_id: OrgQ = None,
        app_id: OrgQ = None,
        run_id: OrgQ = None,
        org_id: OrgQ = None,
        project_id: OrgQ = None,
    ) -> dict[str, Any]:
        require_write(ctx)
        check_project(ctx, org_id, project_id)
        ids = {"user_id": user_id, "agent_id": agent_id, "app_id": app_id, "run_id": run_id}
        return await delete_scope(server, ctx, {k: v for k, v in ids.items() if v})

    # -- batches ----------------------------------------------------------------------------------
    async def existing(ctx: KeyContext, body: BatchBody) -> dict[str, dict[str, Any]]:
        memory = server.memory(ctx)
        found: dict[str, dict[str, Any]] = {}
        for i, item in enumerate(body.memories):
            record = await memory.get(item.memory_id)
            if record is None:
                raise ApiError(
                    404,
                    "not_found",
                    f"memory {item.memory_id} not found",
                    details={"field": f"memories.{i}.memory_id", "id": item.memory_id},
                )
            found[item.memory_id] = record
        return found

    @router.put("/v1/batch/", tags=["memories"])
    async def batch_update(ctx: Ctx, body: BatchBody) -> dict[str, Any]:
        require_write(ctx)
        for i, item in enumerate(body.memories):
            if item.text is None and item.metadata is None:
                raise ApiError(
                    422,
                    "validation_error",
                    f"memories.{i}: text or metadata is required",
                    details={"field": f"memories.{i}.text"},
                )
        await existing(ctx, body)
        memory = server.memory(ctx)
        changed = []
        for item in body.memories:
            result = await memory.update(item.memory_id, text=item.text, metadata=item.metadata)
            changed.append(("UPDATE", {**result, "event": "UPDATE"}))
        await server.runner.fire(ctx.project.id, changed)
        return {"message": f"Successfully updated {len(changed)} memories"}

    @router.delete("/v1/batch/", tags=["memories"])
    async def batch_delete(ctx: Ctx, body: BatchBody) -> dict[str, Any]:
        require_write(ctx)
        records = await existing(ctx, body)
        memory = server.memory(ctx)
        for memory_id in records:
            await memory.delete(memory_id)
        await server.runner.fire(
            ctx.project.id, [("DELETE", {**r, "event": "DELETE"}) for r in records.values()]
        )
        return {"message": f"Successfully deleted {len(records)} memories"}

    return router
