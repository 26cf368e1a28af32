"""What the MCP tools call: a caller's scope rules and the memory operations behind them.

:class:`MemoryBackend` runs every operation on a public :class:`engram.AsyncMemory` (the embedded
store for ``engram mcp``); the server subclasses it so that writes go through the same job queue,
webhooks and entity records as its REST routes (see ``engram.mcp.http``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engram.memory import AsyncMemory
from engram.retrieval import search_reranking_if_possible
from engram.types import SCOPE_FIELDS

# Fields of a memory a model needs; the rest (hashes, source ids...) stays out of its context.
_ITEM_KEYS = ("id", "memory", "score", "event", *SCOPE_FIELDS, "metadata", "created_at", "updated_at")


class ToolFailure(Exception):
    """A refused or failed tool call; the message is what the model reads."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: default scope ids, and whether a tool argument may name another user."""

    defaults: dict[str, str] = field(default_factory=dict)
    allow_any_user: bool = False
    confinement: str = "start the server with --allow-any-user to reach other users"
    recorded: dict[str, str] = field(default_factory=dict)  # written on adds, never used to narrow reads

    def scope(self, explicit: dict[str, str | None], *, use_defaults: bool = True) -> dict[str, str]:
        """The scope of a call: the defaults, overridden by the ids the call names."""
        given = {k: v for k, v in explicit.items() if v not in (None, "")}
        if "user_id" in given:
            self.check_user(str(given["user_id"]))
        ids = dict(self.defaults) if use_defaults else {}
        ids.update({k: str(v) for k, v in given.items()})
        return ids

    def read_scope(self, explicit: dict[str, str | None], filters: Any) -> dict[str, str]:
        """The scope of a search or listing: the defaults are left out when the filters name a scope."""
        self.check_filters(filters)
        text = dumps(filters or {})
        named = any(f'"{key}"' in text for key in SCOPE_FIELDS)
        return self.scope(explicit, use_defaults=not named)

    def explicit_scope(self, explicit: dict[str, str | None], tool: str) -> dict[str, str]:
        """Only the ids the call names (destructive tools); none at all is refused."""
        scope = self.scope(explicit, use_defaults=False)
        if not scope:
            raise ToolFailure(
                f"{tool} needs an explicit scope: pass user_id, agent_id, app_id or run_id "
                "(it never deletes every memory of the project)"
            )
        return scope

    def add_scope(self, explicit: dict[str, str | None]) -> dict[str, str]:
        """The scope of an add: :meth:`scope`, plus the ids recorded on writes (OpenMemory's client)."""
        return {**self.recorded, **self.scope(explicit)}

    def check_user(self, user_id: str) -> None:
        default = self.defaults.get("user_id")
        if self.allow_any_user or default is None or user_id == default:
            return
        raise ToolFailure(
            f"user_id {user_id!r} is not allowed: this server is confined to user "
            f"{default!r} ({self.confinement})"
        )

    def check_filters(self, filters: Any) -> None:
        """Refuse filters that name another user than the confined one (at any depth)."""
        if self.allow_any_user or "user_id" not in self.defaults:
            return
        for value in _user_ids_in(filters):
            self.check_user(value)


def _user_ids_in(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "user_id":
                found.extend(_values_of(value))
            else:
                found.extend(_user_ids_in(value))
    elif isinstance(node, list):
        for child in node:
            found.extend(_user_ids_in(child))
    return found


def _values_of(condition: Any) -> list[str]:
    """Every user id a ``user_id`` condition could match; a wildcard or operator matches others."""
    if isinstance(condition, str) and condition != "*":
        return [condition]
    if isinstance(condition, dict) and set(condition) <= {"eq", "in"}:
        values = [condition.get("eq")] if "eq" in condition else list(condition.get("in") or [])
        if values and all(isinstance(v, str) and v != "*" for v in values):
            return [str(v) for v in values]
    return ["<any user>"]


def compact(item: dict[str, Any]) -> dict[str, Any]:
    """A memory as the model sees it: id, text, score, scope ids, metadata and dates."""
    out: dict[str, Any] = {}
    for key in _ITEM_KEYS:
        value = item.get(key)
        if value in (None, {}, ""):
            continue
        out[key] = round(value, 4) if key == "score" and isinstance(value, float) else value
    return out


def dumps(value: Any) -> str:
    """Compact JSON text, the shape every tool answers in."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class MemoryBackend:
    """The operations behind the tools, on one AsyncMemory (a namespace view on the server)."""

    def __init__(self, memory: AsyncMemory) -> None:
        self.memory = memory

    async def add(self, messages: Any, scope: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        result = await self.memory.add(messages, **scope, **kwargs)
        return list(result.get("results", []))

    async def search(
        self, query: str, scope: dict[str, Any], *, rerank: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        return await search_reranking_if_possible(self.memory, query, rerank=rerank, **scope, **kwargs)

    async def list_memories(self, scope: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return await self.memory.get_all(**scope, **kwargs)

    async def count(self, scope: dict[str, Any]) -> int:
        return int((await self.memory.get_all(top_k=1, **scope))["total"])

    async def get(self, memory_id: str) -> dict[str, Any]:
        item = await self.memory.get(memory_id)
        if item is None:
            raise ToolFailure(f"memory {memory_id} not found")
        return item

    async def update(
        self, memory_id: str, text: str | None, metadata: dict[str, Any] | None
    ) -> dict[str, Any]:
        return await self.memory.update(memory_id, text=text, metadata=metadata)

    async def delete(self, memory_id: str) -> None:
        await self.memory.delete(memory_id)

    async def delete_all(self, scope: dict[str, Any]) -> int:
        return int((await self.memory.delete_all(**scope)).get("deleted", 0))

    async def history(self, memory_id: str) -> dict[str, Any]:
        entries = await self.memory.history(memory_id)
        if not entries:
            await self.get(memory_id)
        return {"history": entries, "sources": await self.memory.sources(memory_id)}

    async def entities(self, caller: Caller) -> list[dict[str, Any]]:
        """The embedded store keeps no entity list: the caller's default ids, with their counts."""
        rows = []
        for key, name in caller.defaults.items():
            total = await self.count({key: name})
            rows.append({"type": key.removesuffix("_id"), "name": name, "total_memories": total})
        return rows

    async def delete_entity(self, key: str, name: str) -> int:
        return await self.delete_all({key: name})
