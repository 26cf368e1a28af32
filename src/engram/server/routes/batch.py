"""Batch updates and deletes (``/v1/batch/``): every id is checked before anything changes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from engram.server.auth import require_write
from engram.server.deps import Ctx, Server, ServerDep
from engram.server.errors import ApiError
from engram.service import KeyContext

router = APIRouter(tags=["memories"])


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    memory_id: str = Field(min_length=1, max_length=256)
    text: str | None = None
    metadata: dict[str, Any] | None = None


class BatchBody(BaseModel):
    memories: list[BatchItem] = Field(min_length=1, max_length=1000)


async def existing(server: Server, ctx: KeyContext, body: BatchBody) -> dict[str, dict[str, Any]]:
    """Every memory the batch names (404 naming the first missing one)."""
    memory = server.memory(ctx)
    found: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(body.memories):
        record = await memory.get(item.memory_id)
        if record is None:
            raise ApiError(
                "not_found",
                f"memory {item.memory_id} not found",
                details={"field": f"memories.{i}.memory_id", "id": item.memory_id},
            )
        found[item.memory_id] = record
    return found


@router.put("/v1/batch/")
async def batch_update(ctx: Ctx, server: ServerDep, body: BatchBody) -> dict[str, Any]:
    require_write(ctx)
    for i, item in enumerate(body.memories):
        if item.text is None and item.metadata is None:
            raise ApiError(
                "validation_error",
                f"memories.{i}: text or metadata is required",
                details={"field": f"memories.{i}.text"},
            )
    await existing(server, ctx, body)
    memory = server.memory(ctx)
    for item in body.memories:
        await memory.update(item.memory_id, text=item.text, metadata=item.metadata)
    server.webhooks.notify()
    return {"message": f"Successfully updated {len(body.memories)} memories"}


@router.delete("/v1/batch/")
async def batch_delete(ctx: Ctx, server: ServerDep, body: BatchBody) -> dict[str, Any]:
    require_write(ctx)
    records = await existing(server, ctx, body)
    memory = server.memory(ctx)
    for memory_id in records:
        await memory.delete(memory_id)
    server.webhooks.notify()
    return {"message": f"Successfully deleted {len(records)} memories"}
