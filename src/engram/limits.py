"""The input contract: every size, count and depth Engram accepts, in one settings object.

The library checks its arguments against ``MemoryConfig.limits``; the server checks requests against
its engine's limits before anything is stored or queued. A request over a limit raises
:class:`engram.errors.LimitExceededError` (HTTP 413) naming the field and the limit.
See docs/reliability.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ROLES: tuple[str, ...] = ("user", "assistant", "system")  # the roles mem0 reads from a conversation


class Limits(BaseModel):
    """Documented defaults; each can be set in ``MemoryConfig(limits={...})``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_messages_per_add: int = Field(1_000, ge=1, description="messages in one add")
    max_message_chars: int = Field(
        1_000_000, ge=1, description="characters in one message of an add (runs of whitespace count as one)"
    )
    max_memory_chars: int = Field(
        1_000_000,
        ge=1,
        description="characters in a memory's text: update, and each message an infer=False add stores",
    )
    max_query_chars: int = Field(10_000, ge=1, description="characters in a search query")
    max_prompt_chars: int = Field(100_000, ge=1, description="characters in a prompt / custom instructions")
    max_metadata_bytes: int = Field(64_000, ge=2, description="metadata as compact JSON (UTF-8 bytes)")
    max_metadata_depth: int = Field(64, ge=1, description="nesting of objects and lists inside metadata")
    max_metadata_keys: int = Field(256, ge=1, description="keys in metadata, counted at every level")
    max_filter_depth: int = Field(20, ge=1, description="nesting of objects and lists inside filters")
    max_filter_nodes: int = Field(500, ge=1, description="keys and list items in filters, all levels")
    max_id_chars: int = Field(256, ge=1, description="characters in an id (user_id, memory_id, ...)")
    max_page_size: int = Field(1_000, ge=1, description="top_k of a search; page_size of a list")

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(v is None for v in data.values()):
            raise ValueError("limits must be numbers (omit a key to keep its default)")
        return data


DEFAULT_LIMITS = Limits()


def json_shape(value: Any) -> tuple[int, int]:
    """``(depth, nodes)`` of a JSON-like value, walked without recursion (so any depth is safe).

    Depth counts nested objects and lists (a flat object is 1); nodes counts keys and list items.
    """
    depth = nodes = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: list[Any] = list(item.values())
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        depth = max(depth, level + 1)
        nodes += len(children)
        stack.extend((child, level + 1) for child in children)
    return depth, nodes
