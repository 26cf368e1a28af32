"""Profiles (mem0's /v2 profile endpoints), summaries and the named entities a scope mentions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path
from pydantic import BaseModel, ConfigDict, Field

from engram.profiles import check_schema
from engram.server.auth import check_project, require_write
from engram.server.deps import Ctx, Server, ServerDep
from engram.server.errors import ApiError, not_found
from engram.server.profile_jobs import (
    STATUS,
    job_view,
    profile_settings,
    request_digest,
    save_profile_settings,
    status_url,
)
from engram.server.routes.helpers import Scoped, scope_kwargs
from engram.service import Job, KeyContext

router = APIRouter(tags=["profiles"])
EntityType = Literal["user", "agent", "app", "run"]
EntityIdP = Annotated[str, Path(min_length=1, max_length=256)]
IdemHeader = Annotated[str | None, Header()]
MAX_SAMPLE = 10


class ProfileJobBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    operation: Literal["trigger", "sample"] = "trigger"
    entity_type: Literal["user"] = "user"
    entity_id: str | None = Field(None, min_length=1, max_length=256)
    limit: int | None = Field(None, ge=1, le=MAX_SAMPLE)


class UserProfileSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    custom_instructions: str | None = Field(None, max_length=20_000)


class ProfileSettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    entities: dict[Literal["user"], UserProfileSettings] | None = None


def _profile_answer(entity_id: str, status: str, view: dict[str, Any] | None) -> dict[str, Any]:
    view = view or {}
    return {
        "entity_type": "user",
        "entity_id": entity_id,
        "status": status,
        "profile": view.get("profile") or {},
        "updated_at": view.get("built_at"),
        "generation_count": view.get("generation_count", 0),
        "stale": bool(view.get("stale", False)),
        "memory_ids": view.get("memory_ids", []),
    }


def _job_answer(job: Job, created: bool) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": STATUS.get(job.status, "pending"),
        "status_url": status_url(job.id),
        "operation": job.payload.get("operation"),
        "entity_type": "user",
        "entity_count_reserved": len(job.payload.get("entity_ids", [])),
        "event_id": job.id,
        "replayed": not created,
    }


async def known_user(server: Server, ctx: KeyContext, user_id: str) -> bool:
    """The project has seen ``user_id`` (as an entity of its adds)."""
    entities = await server.state.list_entities(ctx.project.id)
    return any(e.type == "user" and e.name == user_id for e in entities)


async def has_memories(server: Server, ctx: KeyContext, user_id: str) -> bool:
    return int((await server.memory(ctx).get_all(top_k=1, user_id=user_id))["total"]) > 0


async def sample_users(server: Server, ctx: KeyContext, limit: int) -> list[str]:
    """Up to ``limit`` of the project's users that have memories."""
    chosen: list[str] = []
    for entity in await server.state.list_entities(ctx.project.id):
        if len(chosen) >= limit:
            break
        if entity.type == "user" and await has_memories(server, ctx, entity.name):
            chosen.append(entity.name)
    return chosen


async def enqueue(
    server: Server, ctx: KeyContext, operation: str, ids: list[str], idem: str | None, digest: str | None
) -> tuple[Job, bool]:
    """Queue a PROFILE job for ``ids`` (once per idempotency key) and wake the runners."""
    enqueued = await server.state.enqueue(
        ctx.project.id,
        "PROFILE",
        {"operation": operation, "entity_ids": ids},
        idempotency_key=idem,
        request_hash=digest,
        lease_seconds=server.settings.lease_seconds,
    )
    server.runner.wake.set()
    return enqueued.job, enqueued.created


@router.get("/v2/entities/user/{entity_id}/profile/", summary="A user's profile")
async def get_profile(ctx: Ctx, server: ServerDep, entity_id: EntityIdP) -> dict[str, Any]:
    if not (await profile_settings(server.state, ctx.project.id))["enabled"]:
        return _profile_answer(entity_id, "not_enabled", None)
    view = await server.memory(ctx).profile(entity_id, build=False)
    if view["status"] == "insufficient_data":
        if not await known_user(server, ctx, entity_id):
            raise not_found("user", entity_id)
        return _profile_answer(entity_id, "insufficient_data", view)
    if view["status"] == "succeeded" and not view["stale"]:
        return _profile_answer(entity_id, "succeeded", view)
    # missing or stale: (re)generate on the queue, once per stored version
    key = f"profile-auto:{entity_id}:{view['built_at'] or 'none'}"
    job, _ = await enqueue(server, ctx, "trigger", [entity_id], key, None)
    status = STATUS.get(job.status, "pending")
    if status == "succeeded":
        status = view["status"] if view["status"] == "succeeded" else "pending"
    return _profile_answer(entity_id, status, view)


@router.post("/v2/profiles/jobs/", summary="Generate one user's profile, or sample a few")
async def create_profile_job(
    ctx: Ctx, server: ServerDep, body: ProfileJobBody, idempotency_key: IdemHeader = None
) -> dict[str, Any]:
    require_write(ctx)
    if not (await profile_settings(server.state, ctx.project.id))["enabled"]:
        raise ApiError(
            "bad_request", "Profiles are not enabled for this project", details={"field": "enabled"}
        )
    digest = request_digest("/v2/profiles/jobs/", body.model_dump(exclude_none=True))
    if body.operation == "sample":
        ids = await sample_users(server, ctx, body.limit or 3)
        job, created = await enqueue(server, ctx, "sample", ids, idempotency_key, digest)
        return {**_job_answer(job, created), "sampled": len(ids), "entity_ids": ids}
    if body.entity_id is None:
        raise ApiError("validation_error", "entity_id is required", details={"field": "entity_id"})
    user = body.entity_id
    if not await known_user(server, ctx, user) and not await has_memories(server, ctx, user):
        raise not_found("user", user)
    job, created = await enqueue(server, ctx, "trigger", [user], idempotency_key, digest)
    return {**_job_answer(job, created), "entity_id": user}


@router.get("/v2/profiles/jobs/{job_id}/", summary="One profile generation job")
async def get_profile_job(ctx: Ctx, server: ServerDep, job_id: str) -> dict[str, Any]:
    job = await server.state.get_job(ctx.project.id, job_id)
    if job is None or job.kind != "PROFILE":
        raise not_found("profile job", job_id)
    return {"job": job_view(job)}


@router.get("/v2/profiles/settings/", summary="Profile settings of the project")
async def get_settings(ctx: Ctx, server: ServerDep) -> dict[str, Any]:
    return await profile_settings(server.state, ctx.project.id)


@router.post("/v2/profiles/settings/", summary="Change the profile settings")
async def update_settings(ctx: Ctx, server: ServerDep, body: ProfileSettingsBody) -> dict[str, Any]:
    require_write(ctx)
    changes = body.model_dump(exclude_unset=True, by_alias=True)
    user = (changes.get("entities") or {}).get("user") or {}
    if user.get("schema") is not None:
        check_schema(user["schema"])
    await save_profile_settings(server.state, ctx.project.id, changes)
    return await profile_settings(server.state, ctx.project.id)


@router.post("/v1/summary/", tags=["memories"], summary="A readable summary of matching memories")
async def summary(ctx: Ctx, server: ServerDep, body: Scoped) -> dict[str, Any]:
    check_project(ctx, body.org_id, body.project_id)
    result = await server.memory(ctx).summary(filters=body.filters, **scope_kwargs(body))
    return {"status": "succeeded", **result}


@router.get("/v1/entities/{entity_type}/{entity_id}/mentions/", tags=["entities"])
async def mentions(
    ctx: Ctx, server: ServerDep, entity_type: Annotated[EntityType, Path()], entity_id: EntityIdP
) -> dict[str, Any]:
    ids: dict[str, Any] = {f"{entity_type}_id": entity_id}
    found = await server.memory(ctx).entities(**ids)
    return {"count": len(found["results"]), "results": found["results"]}
