"""What a write means, decided once for every SQL store: dedup, supersession and history.

- A memory whose hash is current in exactly its scope is not stored again: its sources are linked to
  the existing memory and the outcome is ``NONE``. An *expired* twin is superseded instead (the fact
  is true again). A raw memory whose exact text was an earlier message of the scope that still has
  current, unedited memories derived from it is ``NONE`` with the first of them.
- ``supersedes`` marks current memories superseded by the new one (history ``SUPERSEDE``).
- Every change writes its history row (``ADD``, ``UPDATE``, ``SUPERSEDE``, ``DELETE``) in the same
  transaction. The functions here run inside the dialect's transaction, on its :class:`Session`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from engram.errors import ConflictError, NotFoundError, StoreError
from engram.stores.sql import changes
from engram.stores.sql.dialect import Session
from engram.types import (
    HistoryEntry,
    HistoryEvent,
    MemoryRecord,
    NewMemory,
    RestoredMemory,
    Scope,
    StoredMessage,
    Vector,
    WriteOutcome,
    utcnow,
)

INSERT_ATTEMPTS = 6  # at inserting a fact that another transaction deletes meanwhile


@dataclass(slots=True)
class Added:
    """What :func:`add` did: the outcomes, the memories stored, and whether any was superseded."""

    outcomes: list[WriteOutcome] = field(default_factory=list)
    stored: list[NewMemory] = field(default_factory=list)
    superseded: bool = False


async def history(
    s: Session,
    namespace: str,
    memory_id: str,
    event: HistoryEvent,
    old: str | None,
    new: str | None,
    at: datetime,
    actor_id: str | None = None,
    role: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    entry = HistoryEntry(str(uuid.uuid4()), memory_id, event, old, new, at, actor_id, role, details or {})
    await s.add_history(namespace, entry)


async def add(s: Session, namespace: str, messages: list[StoredMessage], memories: list[NewMemory]) -> Added:
    """Store the messages, then each memory unless it is already there (see the module docstring)."""
    await s.insert_messages(namespace, messages)
    now = utcnow()
    batch_ids = [m.id for m in messages]
    done = Added()
    for mem in memories:
        existing = await _current_twin(s, namespace, mem, now, done)
        if existing is None and mem.raw:
            existing = await s.derived_memory(namespace, mem, batch_ids, now.date())
        if existing is None:
            existing = await _insert(s, namespace, mem, now)
        if existing is not None:
            await s.link_sources(existing, mem.source_message_ids)
            done.outcomes.append(WriteOutcome(existing, mem.text, "NONE", existing_id=existing))
            continue
        await s.link_sources(mem.id, mem.source_message_ids)
        await history(s, namespace, mem.id, "ADD", None, mem.text, now, mem.actor_id, mem.role)
        for old_id in mem.supersedes:
            done.superseded |= await supersede(s, namespace, old_id, mem, now)
        done.outcomes.append(WriteOutcome(mem.id, mem.text, "ADD"))
        done.stored.append(mem)
    return done


async def _current_twin(s: Session, namespace: str, mem: NewMemory, now: datetime, done: Added) -> str | None:
    """The current memory saying the same in exactly this scope; an expired one is superseded by
    ``mem`` instead (the fact is true again), and then there is none."""
    row = await s.current_memory(namespace, mem.scope.key(), mem.hash, lock=True)
    if row is None:
        return None
    if row[1] is not None and row[1] < now.date():
        done.superseded |= await supersede(s, namespace, row[0], mem, now)
        return None
    return row[0]


async def _insert(s: Session, namespace: str, mem: NewMemory, now: datetime) -> str | None:
    """Insert ``mem``; when another writer made its hash current first, that memory's id."""
    for _ in range(INSERT_ATTEMPTS):
        if await s.insert_memory(namespace, mem, now):
            return None
        row = await s.current_memory(namespace, mem.scope.key(), mem.hash)
        if row is not None:
            return row[0]
        # ...and it was deleted or superseded in between: try the insert again.
    raise StoreError(f"memories[].hash {mem.hash!r}: could not insert or find the current memory")


async def supersede(s: Session, namespace: str, old_id: str, new: NewMemory, now: datetime) -> bool:
    """Mark ``old_id`` superseded by ``new`` (history ``SUPERSEDE``); False when it was not current."""
    old_text = await s.supersede(namespace, old_id, new.id, now)
    if old_text is None:
        return False
    details = {"superseded_by": new.id}
    await history(s, namespace, old_id, "SUPERSEDE", old_text, new.text, now, new.actor_id, new.role, details)
    return True


@dataclass(frozen=True, slots=True)
class Change:
    """What :func:`update` changes: text (with its hash and vector), the whole metadata and/or the
    expiration date (``expires_at`` sets it, ``clear_expiry`` removes it)."""

    text: str | None = None
    text_hash: str | None = None
    vector: Vector | None = None
    metadata: dict[str, Any] | None = None
    expires_at: date | None = None
    clear_expiry: bool = False


async def update(s: Session, namespace: str, memory_id: str, change: Change) -> MemoryRecord:
    """Change one memory; the new text may not repeat another current memory of its scope."""
    row = await s.lock_memory(namespace, memory_id)
    if row is None:
        raise NotFoundError(f"Memory {memory_id!r} not found", details={"memory_id": memory_id})
    now = utcnow()
    if change.text is not None and change.text_hash is not None and change.vector is not None:
        clash = await s.current_memory(namespace, row.scope_key, change.text_hash, exclude=memory_id)
        if clash is not None:
            raise ConflictError(
                f"Memory {clash[0]!r} in the same scope already says this", details={"existing_id": clash[0]}
            )
        await s.set_text(row, change.text, change.text_hash, change.vector, now)
    if change.metadata is not None:
        await s.set_metadata(row, change.metadata, now)
    details: dict[str, Any] = {"metadata": change.metadata} if change.metadata is not None else {}
    if change.expires_at is not None or change.clear_expiry:
        await s.set_expiry(row, change.expires_at, now)
        details["expiration_date"] = change.expires_at.isoformat() if change.expires_at else None
    new_text = change.text if change.text is not None else row.text
    await history(s, namespace, memory_id, "UPDATE", row.text, new_text, now, row.actor_id, row.role, details)
    return (await s.records(namespace, [memory_id]))[0]


async def delete(s: Session, namespace: str, target: str | Scope) -> int:
    """Soft-delete one memory (by id) or every memory of a scope; history ``DELETE`` keeps the text."""
    now = utcnow()
    rows = await s.mark_deleted(namespace, target, now)
    for memory_id, text, actor_id, role in rows:
        await history(s, namespace, memory_id, "DELETE", text, None, now, actor_id, role)
    return len(rows)


async def restore(s: Session, namespace: str, memory: RestoredMemory) -> bool:
    """Write one exported memory back as it was (see :meth:`engram.interfaces.Store.restore`): False,
    writing nothing, when its id is taken; messages already stored are linked, not copied."""
    rec = memory.record
    if await s.memory_taken(rec.id):
        return False
    await s.insert_messages(namespace, memory.messages, existing_ok=True)
    await s.restore_memory(namespace, rec, memory.vector)  # a current twin of another id: ConflictError
    await s.link_sources(rec.id, [m.id for m in memory.messages])
    for entry in memory.history:
        await s.add_history(namespace, replace(entry, memory_id=rec.id))
    await changes.forget_restored(s.db(), rec.id)  # an import replays no webhook events
    return True
