"""Feedback on a memory (mem0's ``client.feedback``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engram.server.auth import require_write
from engram.server.deps import Ctx, ServerDep
from engram.server.errors import not_found

router = APIRouter(tags=["feedback"])
FEEDBACK_VALUES = ("POSITIVE", "NEGATIVE", "VERY_NEGATIVE")


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    memory_id: str = Field(min_length=1, max_length=256)
    feedback: str | None = None
    feedback_reason: str | None = Field(None, max_length=10_000)

    @field_validator("feedback")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in FEEDBACK_VALUES:
            raise ValueError(f"must be one of {', '.join(FEEDBACK_VALUES)} or null")
        return value.upper() if value else None


@router.post("/v1/feedback/")
async def feedback(ctx: Ctx, server: ServerDep, body: FeedbackBody) -> dict[str, Any]:
    require_write(ctx)
    if await server.memory(ctx).get(body.memory_id) is None:
        raise not_found("memory", body.memory_id)
    return await server.state.add_feedback(
        ctx.project.id, body.memory_id, body.feedback, body.feedback_reason
    )
