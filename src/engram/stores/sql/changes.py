"""The change feed of every SQL store: its history rows, read in commit order (the webhook outbox).

Every memory write commits its history rows (``ADD``, ``UPDATE``, ``DELETE``, ``SUPERSEDE``) in the
memory's own transaction, so the history is a transactional outbox. A feed position (a cursor) is
``"<tx>:<seq>"``, and the feed is ordered by ``(tx, seq)``:

- ``seq`` is the history row's autoincrement key;
- ``tx`` orders transactions. SQLite runs one write transaction at a time, so ``seq`` already follows
  commit order and ``tx`` is ``0`` for every row. PostgreSQL commits concurrent transactions in any
  order, so there ``tx`` is the writing transaction's id (``pg_current_xact_id()``), and a read
  returns only rows below the *horizon*: the oldest transaction still running when the read began
  (``pg_snapshot_xmin``). Everything below it has ended, so no row can later appear before a
  returned one, and every row that appears later has a ``tx`` above the reader's cursor.

Rows written before the feed existed, and history written back by an import (:func:`forget_restored`),
have ``tx`` NULL and are not in the feed. The column comes from store migration "change feed"
(SQLite 3, PostgreSQL 6).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engram.errors import ValidationError
from engram.stores.sql.db import Db
from engram.types import ChangeEvent

_COLUMNS = "tx, seq, id, namespace, memory_id, event, old_memory, new_memory, created_at"


def position(cursor: str) -> tuple[int, int]:
    """The ``(tx, seq)`` of a cursor; a malformed one is a :class:`ValidationError`."""
    try:
        tx, seq = (int(part) for part in cursor.split(":"))
    except ValueError as e:
        raise ValidationError(f"cursor {cursor!r}: expected '<tx>:<seq>'", details={"field": "cursor"}) from e
    return tx, seq


async def since(db: Db, horizon: str, after: str | None, limit: int) -> list[ChangeEvent]:
    """Up to ``limit`` feed rows after ``after`` (None: from the start), below the horizon, in feed
    order. The horizon is read in the same statement as the rows: one snapshot."""
    tx, seq = position(after) if after is not None else (-1, 0)
    rows = await db.rows(
        f"SELECT {_COLUMNS} FROM {{s}}.history WHERE tx IS NOT NULL AND tx < {horizon} "
        "AND (tx > %s OR (tx = %s AND seq > %s)) ORDER BY tx, seq LIMIT %s",
        (tx, tx, seq, limit),
    )
    return [_event(r) for r in rows]


async def forget_restored(db: Db, memory_id: str) -> None:
    """Take a restored memory's history out of the feed: an import replays no events."""
    await db.execute("UPDATE {s}.history SET tx = NULL WHERE memory_id = %s", (memory_id,))


def _event(r: Any) -> ChangeEvent:
    return ChangeEvent(f"{int(r[0])}:{int(r[1])}", r[2], r[3], r[4], r[5], r[6], r[7], _when(r[8]))


def _when(value: Any) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
