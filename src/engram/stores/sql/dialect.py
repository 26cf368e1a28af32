"""What a SQL dialect implements for the storage core (:mod:`engram.stores.sql.store`).

A dialect is two classes. Its store (a :class:`~engram.stores.sql.store.SQLStore`) opens and closes
connections and runs a function in a read or in one write transaction, handing it a *session*: an
object bound to one connection that implements :class:`Session` by running SQL. The rules (what dedup
means, when a memory is superseded, which history rows are written, which terms and neighbours count)
are in :mod:`engram.stores.sql.writes`, :mod:`engram.stores.sql.store` and :mod:`engram.ranking`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, TypeVar, cast

from engram.errors import EmbedderMismatchError, StoreError
from engram.filters import FilterNode
from engram.interfaces import ListPage
from engram.ranking import Neighbour
from engram.stores.sql.db import Db
from engram.types import (
    Candidate,
    EmbedderInfo,
    HistoryEntry,
    MemoryRecord,
    NewMemory,
    Scope,
    StoredMessage,
    Vector,
    Visibility,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Query:
    """Where a read looks: namespace, scope, filter tree, visibility, and how many rows at most."""

    namespace: str
    scope: Scope
    filters: FilterNode | None
    visibility: Visibility
    limit: int = 0


@dataclass(frozen=True, slots=True)
class Locked:
    """A memory an update holds (locked where the dialect needs it); ``key`` is the dialect's own."""

    text: str
    scope_key: str
    actor_id: str | None
    role: str | None
    key: Any


Deleted = tuple[str, str, str | None, str | None]  # (id, text, actor_id, role)
Neighbours = dict[str, tuple[float, Neighbour | None, Neighbour | None]]  # id -> (observed, prev, next)


class Session(Protocol):
    """SQL over one connection (inside a transaction for writes). Times are UTC datetimes."""

    # -- reads -----------------------------------------------------------------------------------
    async def records(self, namespace: str, memory_ids: list[str]) -> list[MemoryRecord]:
        """Current (not deleted) memories among ``memory_ids``, in that order, with their sources."""

    async def list_page(self, q: Query, offset: int) -> ListPage:
        """One page, newest observation first, and the total, from one snapshot."""

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]: ...

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]: ...

    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]: ...

    async def current_ids(self, namespace: str, scope: Scope, hashes: list[str]) -> dict[str, str]: ...

    async def vectors(self, namespace: str, memory_ids: list[str]) -> dict[str, Vector]: ...

    # -- candidates ------------------------------------------------------------------------------
    async def vector_candidates(self, q: Query, query_vector: Vector) -> list[Candidate]: ...

    async def keyword_candidates(self, q: Query, terms: list[str]) -> list[Candidate]:
        """BM25 over the informative ones of ``terms`` (:func:`engram.ranking.informative_terms`)."""

    async def neighbours(self, namespace: str, scope: Scope, memory_ids: list[str]) -> Neighbours:
        """Each memory's observation time and the memories just before and after it in the scope."""

    # -- writes ----------------------------------------------------------------------------------
    async def insert_messages(
        self, namespace: str, messages: list[StoredMessage], *, existing_ok: bool = False
    ) -> None:
        """Store the messages (``existing_ok``: skip those whose id is already stored)."""

    async def memory_taken(self, memory_id: str) -> bool:
        """Whether any memory (any namespace, deleted ones included) has this id."""

    async def restore_memory(self, namespace: str, rec: MemoryRecord, vector: Vector) -> None:
        """Insert the exported row as it was (dates, supersession, metadata), its vector and keyword
        index; an integrity error (a current twin under another id) becomes ConflictError."""

    async def current_memory(
        self, namespace: str, scope_key: str, hash_: str, *, exclude: str | None = None, lock: bool = False
    ) -> tuple[str, date | None] | None:
        """(id, expires_at) of the current memory with this hash in exactly this scope."""

    async def derived_memory(
        self, namespace: str, mem: NewMemory, batch_ids: list[str], today: date
    ) -> str | None:
        """A current, unedited, unexpired memory extracted from an earlier message (not one of
        ``batch_ids``) of exactly this scope whose content is exactly ``mem.text``."""

    async def insert_memory(self, namespace: str, mem: NewMemory, now: datetime) -> bool:
        """Insert the row, vector and keyword index; False when another writer's current memory
        already holds this hash (nothing inserted)."""

    async def supersede(self, namespace: str, old_id: str, new_id: str, now: datetime) -> str | None:
        """Mark a current memory superseded; its text, or None when it was not current."""

    async def link_sources(self, memory_id: str, message_ids: Sequence[str]) -> None: ...

    async def add_history(self, namespace: str, entry: HistoryEntry) -> None: ...

    async def lock_memory(self, namespace: str, memory_id: str) -> Locked | None: ...

    async def set_text(
        self, row: Locked, text: str, text_hash: str, vector: Vector, now: datetime
    ) -> None: ...

    async def set_metadata(self, row: Locked, metadata: dict[str, Any], now: datetime) -> None: ...

    async def set_expiry(self, row: Locked, expires_at: date | None, now: datetime) -> None:
        """Set (or, with None, remove) the memory's expiration date."""

    async def mark_deleted(self, namespace: str, target: str | Scope, now: datetime) -> list[Deleted]:
        """Soft-delete one memory (by id) or a scope's; what was deleted."""

    async def reset(self, namespace: str | None, embedder: EmbedderInfo) -> None: ...

    # -- re-embedding (the rest is generic SQL in engram.stores.sql.reembed) -----------------------
    async def set_vectors(self, vectors: list[tuple[int, Vector]]) -> None:
        """Replace the vectors of these memories (by ``seq``), whatever their previous size."""

    async def type_vectors(self, dim: int | None) -> None:
        """Where vectors have a declared size: ``None`` lets the column hold any size (a re-embed
        to another size is under way), ``dim`` declares it again (and rebuilds vector indexes)."""

    # -- derived data (entity links and profiles: engram.stores.sql.derived) -----------------------
    def db(self) -> Db:
        """This session's connection as a :class:`~engram.stores.sql.db.Db`."""

    def where(self, q: Query) -> tuple[str, list[Any]]:
        """Scope, visibility and filters of ``q`` as one condition over alias ``m``, in the
        dialect's placeholders."""


def run_inline(awaitable: Awaitable[T]) -> T:
    """The result of an awaitable that never suspends (a synchronous dialect's session: every ``await``
    completes at once), run here and now; lets one async policy drive blocking DB-API calls in a thread."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    steps.close()
    raise StoreError("a synchronous session suspended")


def check_dim(vector: Vector, dim: int, field: str) -> None:
    if vector.shape != (dim,):
        raise StoreError(f"{field} has shape {vector.shape}; this store holds {dim}-d vectors")


def check_embedder(stored: dict[str, str], embedder: EmbedderInfo, where: str, remedy: str) -> None:
    """Vectors of different embedders cannot be compared: refuse a store filled by another one, or
    one whose re-embedding (``stored["reembed"]``, see :mod:`engram.stores.sql.reembed`) is unfinished."""
    if "reembed" in stored:
        target = json.loads(stored["reembed"])
        raise EmbedderMismatchError(
            f"{where} is being re-embedded to embedder {target['embedder']!r} ({target['dim']} "
            f"dimensions) and that was interrupted: its vectors are a mix of two embedders. Run "
            f"`engram reembed` (or AsyncMemory.reembed()) with {target['embedder']!r} again to finish.",
            details={"stored": stored, "configured": {"embedder": embedder.name, "dim": embedder.dim}},
        )
    if stored and (stored["embedder"] != embedder.name or int(stored["dim"]) != embedder.dim):
        raise EmbedderMismatchError(
            f"{where} was filled by embedder {stored['embedder']!r} "
            f"({stored['dim']} dimensions) but {embedder.name!r} ({embedder.dim} dimensions) is "
            f"configured. Vectors of different embedders cannot be compared. Either configure the "
            f"original embedder again, or {remedy}.",
            details={"stored": stored, "configured": {"embedder": embedder.name, "dim": embedder.dim}},
        )


def scope_clauses(namespace: str, scope: Scope, mark: str, alias: str = "m") -> tuple[list[str], list[Any]]:
    """Namespace, not deleted, and the given scope ids (``None`` ids match anything)."""
    clauses = [f"{alias}.namespace = {mark}", f"{alias}.deleted_at IS NULL"]
    params: list[Any] = [namespace]
    for key, value in scope.given().items():  # keys are the four fixed scope field names
        clauses.append(f"{alias}.{key} = {mark}")
        params.append(value)
    return clauses, params


def visibility_clauses(visibility: Visibility, date_mark: str, params: list[Any], iso: bool) -> list[str]:
    """Hide superseded and expired memories unless asked (``iso``: dates bound as ISO text)."""
    clauses = []
    if not visibility.include_superseded:
        clauses.append("m.superseded_by IS NULL")
    if not visibility.show_expired:
        clauses.append(f"(m.expires_at IS NULL OR m.expires_at >= {date_mark})")
        today = visibility.effective_today()
        params.append(today.isoformat() if iso else today)
    return clauses
