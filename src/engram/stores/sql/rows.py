"""Rows to records, for every dialect: the column order of memories and messages is decided here;
a dialect says only how it stores times, dates and metadata."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from engram.types import MemoryRecord, NewMemory, Scope, StoredMessage

MESSAGE_COLUMNS = "id, user_id, agent_id, app_id, run_id, role, name, content, observed_at, created_at"


def content_digest(content: str) -> str:
    """Exact-content key of a message (sha256), indexed for provenance look-ups."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def memory_columns(metadata: str = "metadata") -> str:
    """The memory columns :func:`memory_record` reads, over alias ``m`` (``metadata``: its column)."""
    return (
        f"m.id, m.text, m.hash, m.user_id, m.agent_id, m.app_id, m.run_id, m.actor_id, m.role, m.{metadata}, "
        "m.created_at, m.updated_at, m.observed_at, m.expires_at, m.superseded_by, m.valid_until"
    )


def new_record(mem: NewMemory, now: datetime) -> MemoryRecord:
    """The row a new memory becomes (created ``now``), as a restored one is written from its record."""
    return MemoryRecord(
        mem.id, mem.text, mem.hash, mem.scope, mem.actor_id, mem.role, mem.metadata, now, None,
        mem.observed_at, mem.expires_at,
    )  # fmt: skip


class RowReader:
    """How one dialect's values become Python's: ``when`` a timestamp, ``day`` a date, ``meta`` metadata."""

    def __init__(
        self,
        when: Callable[[Any], datetime],
        day: Callable[[Any], date | None],
        meta: Callable[[Any], dict[str, Any]],
    ) -> None:
        self.when, self.day, self.meta = when, day, meta

    def memory(self, row: tuple[Any, ...]) -> MemoryRecord:
        return MemoryRecord(
            id=row[0], text=row[1], hash=row[2], scope=Scope(row[3], row[4], row[5], row[6]), actor_id=row[7],
            role=row[8], metadata=self.meta(row[9]), created_at=self.when(row[10]),
            updated_at=self._maybe(row[11]), observed_at=self.when(row[12]), expires_at=self.day(row[13]),
            superseded_by=row[14], valid_until=self._maybe(row[15]),
        )  # fmt: skip

    def message(self, row: tuple[Any, ...]) -> StoredMessage:
        return StoredMessage(
            id=row[0], scope=Scope(row[1], row[2], row[3], row[4]), role=row[5], name=row[6], content=row[7],
            observed_at=self.when(row[8]), created_at=self.when(row[9]),
        )  # fmt: skip

    def _maybe(self, value: Any) -> datetime | None:
        return self.when(value) if value else None
