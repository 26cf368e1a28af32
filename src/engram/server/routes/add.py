"""Adding memories: queued (``async_mode``, the default) or run inline, with ``Idempotency-Key``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from engram.inputs import parse_expiration, parse_timestamp
from engram.server.auth import check_project, require_write
from engram.server.deps import Ctx, Server, ServerDep
from engram.server.errors import ApiError
from engram.server.jobs import error_code
from engram.server.routes.helpers import Scoped, scope_kwargs
from engram.service import Job, KeyContext

router = APIRouter(tags=["memories"])
QUEUED = "Memory processing has been queued for background execution"
IdemHeader = Annotated[str | None, Header()]


class AddBody(Scoped):
    messages: list[dict[str, Any]] | dict[str, Any] | str
    metadata: dict[str, Any] | None = None
    infer: bool = True
    async_mode: bool = True
    timestamp: int | float | str | None = None
    expiration_date: str | None = None
    prompt: str | None = None
    custom_instructions: str | None = None


@router.post("/v3/memories/add/", summary="Add memories (mem0 2.x clients)")
async def add_v3(
    request: Request, ctx: Ctx, server: ServerDep, body: AddBody, idempotency_key: IdemHeader = None
) -> dict[str, Any]:
    return await add(server, request, ctx, body, idempotency_key, v1=False)


@router.post("/v1/memories/", summary="Add memories (mem0 1.x clients)")
async def add_v1(
    request: Request, ctx: Ctx, server: ServerDep, body: AddBody, idempotency_key: IdemHeader = None
) -> dict[str, Any]:
    return await add(server, request, ctx, body, idempotency_key, v1=True)


def add_kwargs(server: Server, body: AddBody) -> dict[str, Any]:
    """Check the add request as the engine will (its limits), and return the engine's arguments."""
    ids = scope_kwargs(body)
    prompt = body.prompt or body.custom_instructions
    server.engine.check_add(body.messages, body.metadata, prompt, body.infer, **ids)
    parse_timestamp(body.timestamp)
    parse_expiration(body.expiration_date)
    kwargs: dict[str, Any] = {
        "messages": body.messages,
        **ids,
        "metadata": body.metadata,
        "infer": body.infer,
        "timestamp": body.timestamp,
        "expiration_date": body.expiration_date,
        "prompt": prompt,
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def request_digest(path: str, request_json: dict[str, Any], idem: str | None) -> str | None:
    """The hash that tells a retried request from another one under the same Idempotency-Key."""
    if idem is None:
        return None
    if not idem.strip() or len(idem) > 255:
        raise ApiError(
            "validation_error",
            "Idempotency-Key must be 1-255 characters",
            details={"field": "Idempotency-Key"},
        )
    canonical = json.dumps([path, request_json], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def add(
    server: Server, request: Request, ctx: KeyContext, body: AddBody, idem: str | None, v1: bool
) -> dict[str, Any]:
    """Queue the add (or run it now when ``async_mode`` is false)."""
    require_write(ctx)
    check_project(ctx, body.org_id, body.project_id)
    kwargs = add_kwargs(server, body)
    request_json = body.model_dump(exclude_none=True, exclude={"org_id", "project_id"})
    sync = not body.async_mode
    enqueued = await server.state.enqueue(
        ctx.project.id,
        "ADD",
        {"request": request_json, "kwargs": kwargs},
        idempotency_key=idem,
        request_hash=request_digest(request.url.path, request_json, idem),
        claim_as=server.runner_id if sync else None,
        lease_seconds=server.settings.lease_seconds,
    )
    job = enqueued.job
    if not sync:
        server.runner.wake.set()
        answer = {"message": QUEUED, "status": job.status, "event_id": job.id}
        return {"results": [answer], **answer} if v1 else answer
    if enqueued.created:
        await server.runner.process(job, server.runner_id)
    job = await wait_terminal(server, job)
    if job.status == "FAILED":
        raise ApiError(error_code(job.error), job.error or "add failed", details={"event_id": job.id})
    return {"results": job.results or [], "event_id": job.id}


async def wait_terminal(server: Server, job: Job) -> Job:
    """Poll ``job`` until it has succeeded or failed (504 after ``sync_add_timeout``)."""
    deadline = time.monotonic() + server.settings.sync_add_timeout
    while job.status not in ("SUCCEEDED", "FAILED"):
        if time.monotonic() > deadline:
            raise ApiError("timeout", "The add did not finish in time", details={"event_id": job.id})
        await asyncio.sleep(0.05)
        fresh = await server.state.get_job(job.project_id, job.id)
        assert fresh is not None
        job = fresh
    return job
