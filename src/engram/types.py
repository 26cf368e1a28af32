"""Plain data types shared by the engine and every backend."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

SCOPE_FIELDS: tuple[str, ...] = ("user_id", "agent_id", "app_id", "run_id")
Vector = npt.NDArray[np.float32]
HistoryEvent = Literal["ADD", "UPDATE", "DELETE", "SUPERSEDE"]
WriteEvent = Literal["ADD", "UPDATE", "DELETE", "NONE"]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a memory belongs to. In a query, ``None`` means "any"; in a stored memory, "not set"."""

    user_id: str | None = None
    agent_id: str | None = None
    app_id: str | None = None
    run_id: str | None = None

    def is_empty(self) -> bool:
        return not any(self.as_tuple())

    def as_tuple(self) -> tuple[str | None, str | None, str | None, str | None]:
        return (self.user_id, self.agent_id, self.app_id, self.run_id)

    def as_dict(self) -> dict[str, str | None]:
        return dict(zip(SCOPE_FIELDS, self.as_tuple(), strict=True))

    def given(self) -> dict[str, str]:
        """Only the ids that are set."""
        return {k: v for k, v in self.as_dict().items() if v is not None}

    def key(self) -> str:
        """A canonical string identifying exactly this scope (used for uniqueness); unambiguous."""
        return json.dumps(self.as_tuple(), ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class Message:
    """One conversation message as given to ``add``."""

    role: str
    content: str
    name: str | None = None


@dataclass(slots=True)
class StoredMessage:
    """A raw message kept for provenance: every memory can say which messages produced it."""

    id: str
    scope: Scope
    role: str
    content: str
    name: str | None
    observed_at: datetime
    created_at: datetime


@dataclass(slots=True)
class MemoryRecord:
    """A stored memory as the store returns it."""

    id: str
    text: str
    hash: str
    scope: Scope
    actor_id: str | None
    role: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime | None
    observed_at: datetime
    expires_at: date | None = None
    superseded_by: str | None = None
    valid_until: datetime | None = None
    source_message_ids: list[str] = field(default_factory=list)

    def to_item(self) -> dict[str, Any]:
        """The mem0-compatible dict shape returned by the public API."""
        item: dict[str, Any] = {
            "id": self.id,
            "memory": self.text,
            "hash": self.hash,
            "metadata": dict(self.metadata),
            **self.scope.as_dict(),
            "actor_id": self.actor_id,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "observed_at": self.observed_at.isoformat(),
            "expiration_date": self.expires_at.isoformat() if self.expires_at else None,
            "superseded_by": self.superseded_by,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "source_message_ids": list(self.source_message_ids),
        }
        return item


@dataclass(slots=True)
class NewMemory:
    """A memory the engine asks the store to write."""

    id: str
    text: str
    hash: str
    scope: Scope
    vector: Vector
    actor_id: str | None = None
    role: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    observed_at: datetime = field(default_factory=utcnow)
    expires_at: date | None = None
    source_message_ids: list[str] = field(default_factory=list)
    supersedes: list[str] = field(default_factory=list)
    raw: bool = False  # the text is a message stored as given (infer=False)


@dataclass(slots=True)
class WriteOutcome:
    """What the store did with one :class:`NewMemory`: stored it, or found it already there."""

    id: str
    text: str
    event: WriteEvent
    existing_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One committed change to a memory, read from the store's change feed (its history, in commit
    order): ``cursor`` is the feed position just after it (see :meth:`engram.interfaces.Store.changes`)."""

    cursor: str
    id: str  # the history row's id: unique, so it names the change
    namespace: str
    memory_id: str
    event: HistoryEvent
    old_memory: str | None
    new_memory: str | None
    created_at: datetime


@dataclass(slots=True)
class HistoryEntry:
    """One change to one memory."""

    id: str
    memory_id: str
    event: HistoryEvent
    old_memory: str | None
    new_memory: str | None
    created_at: datetime
    actor_id: str | None = None
    role: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_item(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "memory_id": self.memory_id,
            "event": self.event,
            "old_memory": self.old_memory,
            "new_memory": self.new_memory,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.created_at.isoformat(),
            "is_deleted": self.event == "DELETE",
            "actor_id": self.actor_id,
            "role": self.role,
            **({"details": dict(self.details)} if self.details else {}),
        }


@dataclass(slots=True)
class RestoredMemory:
    """A memory exactly as exported (id, dates, supersession link, history, source messages), for
    :meth:`engram.interfaces.Store.restore`."""

    record: MemoryRecord
    vector: Vector
    history: list[HistoryEntry] = field(default_factory=list)
    messages: list[StoredMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which memories a read may see besides the current, unexpired ones."""

    include_superseded: bool = False
    show_expired: bool = False
    today: date | None = None  # for expiration; None means "today in UTC"

    def effective_today(self) -> date:
        return self.today or utcnow().date()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A memory proposed by one retrieval signal, with that signal's raw score (higher is better)."""

    memory_id: str
    score: float


@dataclass(frozen=True, slots=True)
class MemoryContext:
    """Where a memory sits in its scope's timeline (used to rank with conversational context).

    ``prev_id`` / ``next_id`` are the memories stored just before / after it in the same scope, set only
    when they were observed within the session gap (the same conversation).
    """

    observed_ts: float  # observed_at as unix seconds
    prev_id: str | None = None
    next_id: str | None = None


@dataclass(frozen=True, slots=True)
class EmbedderInfo:
    """What a store records about the embedder that filled it."""

    name: str
    dim: int


_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Case-, accent-width-, punctuation- and whitespace-insensitive form used for exact dedup."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE_RE.sub(" ", _PUNCT_RE.sub(" ", folded)).strip()


def text_hash(text: str) -> str:
    """The memory ``hash``: md5 of the normalized text (md5 as in mem0; not used for security)."""
    return hashlib.md5(normalize_text(text).encode("utf-8"), usedforsecurity=False).hexdigest()
