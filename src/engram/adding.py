"""The raw (``infer=False``) side of ``add``: validated plans, their vectors and their memories."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from engram.chunking import embed_documents
from engram.errors import ValidationError
from engram.inputs import (
    check_length,
    check_text,
    clean_metadata,
    parse_expiration,
    parse_messages,
    parse_timestamp,
    scope_from,
)
from engram.interfaces import Embedder
from engram.limits import Limits
from engram.types import Message, NewMemory, Scope, StoredMessage, WriteOutcome, text_hash, utcnow

ADD_ORDER = (
    "messages",
    "user_id",
    "agent_id",
    "app_id",
    "run_id",
    "metadata",
    "infer",
    "timestamp",
    "expiration_date",
    "prompt",
)
_ADD_ARGS = frozenset(ADD_ORDER)
_ADD_DEFAULTS: dict[str, Any] = {"infer": True}


@dataclass(slots=True)
class AddPlan:
    """One add's validated arguments."""

    scope: Scope
    stored: list[StoredMessage]
    meta: dict[str, Any]
    expires_at: Any
    observed_at: Any
    prompt: str | None
    infer: bool

    @property
    def kept(self) -> list[StoredMessage]:
        """The messages ``infer=False`` stores as memories (not system, not blank)."""
        return [m for m in self.stored if m.role != "system" and m.content.strip()]


def check_add(
    limits: Limits, messages: Any, metadata: Any, prompt: Any, infer: Any, **scope_ids: str | None
) -> tuple[list[Message], dict[str, Any]]:
    """Check an add's arguments against ``limits``: the parsed messages and cleaned metadata."""
    scope_from(required=True, limits=limits, **scope_ids)
    parsed = parse_messages(messages, limits)
    meta = clean_metadata(metadata, limits=limits)
    _check_add_options(prompt, infer, limits)
    if not infer:  # each message becomes a memory: it must fit one
        for i, m in enumerate(parsed):
            check_length(m.content, f"messages[{i}].content", "max_memory_chars", limits.max_memory_chars)
    return parsed, meta


def plan_add(limits: Limits, args: dict[str, Any]) -> AddPlan:
    """Validate one add's arguments (keyed as in ``ADD_ORDER``); raises before anything is written."""
    ids: dict[str, str | None] = {k: args.get(k) for k in ("user_id", "agent_id", "app_id", "run_id")}
    parsed, meta = check_add(
        limits, args["messages"], args.get("metadata"), args.get("prompt"), args["infer"], **ids
    )
    scope = scope_from(required=True, limits=limits, **ids)
    observed_at = parse_timestamp(args.get("timestamp")) or utcnow()
    expires_at = parse_expiration(args.get("expiration_date"))
    now = utcnow()
    stored = [
        StoredMessage(str(uuid.uuid4()), scope, m.role, m.content, m.name, observed_at, now) for m in parsed
    ]
    return AddPlan(scope, stored, meta, expires_at, observed_at, args.get("prompt"), args["infer"])


def plans_for_items(limits: Limits, items: Any) -> list[AddPlan]:
    """``add_many``'s items, each validated like one ``add`` call (all before anything is written)."""
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationError("items must be a list of dicts of add() arguments", field="items")
    plans = []
    for n, item in enumerate(items):
        unknown = set(item) - _ADD_ARGS
        if unknown:
            raise ValidationError(f"items[{n}] has unknown keys: {sorted(unknown)}", field=f"items[{n}]")
        plans.append(plan_add(limits, {k: item.get(k, _ADD_DEFAULTS.get(k)) for k in ADD_ORDER}))
    return plans


async def embed_kept(embedder: Embedder, plans: list[AddPlan], chunk_chars: int) -> list[Any]:
    """Per plan, the vectors of its kept messages; all plans' texts in one embedding call."""
    texts = [m.content for p in plans for m in p.kept]
    if not texts:
        return [None for _ in plans]
    vectors = await embed_documents(embedder, texts, chunk_chars)
    out: list[Any] = []
    at = 0
    for p in plans:
        out.append(vectors[at : at + len(p.kept)])
        at += len(p.kept)
    return out


def raw_memories(plan: AddPlan, vectors: Any) -> list[NewMemory]:
    """The memories an ``infer=False`` plan stores: one per kept message, as given."""
    return [
        NewMemory(
            id=str(uuid.uuid4()),
            text=m.content,
            hash=text_hash(m.content),
            scope=plan.scope,
            vector=vectors[i],
            actor_id=m.name,
            role=m.role,
            metadata=plan.meta,
            observed_at=plan.observed_at,
            expires_at=plan.expires_at,
            source_message_ids=[m.id],
            raw=True,
        )
        for i, m in enumerate(plan.kept)
    ]


def add_results(outcomes: list[WriteOutcome], memories: list[NewMemory]) -> list[dict[str, Any]]:
    """``add``'s result items (``id``, ``memory``, ``event``...) for what the store did."""
    by_id = {mem.id: mem for mem in memories}
    return [_outcome_item(o, by_id.get(o.id)) for o in outcomes]


def _outcome_item(outcome: WriteOutcome, memory: NewMemory | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": outcome.id, "memory": outcome.text, "event": outcome.event}
    if memory is not None:
        item["actor_id"] = memory.actor_id
        item["role"] = memory.role
    if outcome.existing_id and outcome.event == "NONE":
        item["existing_id"] = outcome.existing_id
    return item


def _check_add_options(prompt: Any, infer: Any, limits: Limits) -> None:
    """``prompt`` is text (or None) within ``limits`` and ``infer`` a boolean."""
    if prompt is not None and not isinstance(prompt, str):
        raise ValidationError("prompt must be a string", field="prompt")
    if prompt is not None:
        check_text(check_length(prompt, "prompt", "max_prompt_chars", limits.max_prompt_chars), "prompt")
    if not isinstance(infer, bool):
        raise ValidationError("infer must be true or false", field="infer")
