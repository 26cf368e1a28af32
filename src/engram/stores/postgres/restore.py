"""Imports into the PostgreSQL store with binary ``COPY`` (:meth:`PostgresStore.restore_many`).

The rule is :func:`engram.interfaces.restore_one`'s, applied to each memory in order. This module only
finds, with four look-ups per batch, the memories that rule would simply write (id free in every
namespace, no current memory of the scope saying the same, history ids free) and writes runs of them
with ``COPY``: memories (vectors in pgvector's binary form, the ``tsvector`` from :mod:`.tokens`),
new source messages, source links and history (left out of the change feed, as every import's).
Any other memory (its id already there, a conflict) goes through the rule itself at its place in
the order, in a savepoint of the same transaction, so its outcome, conflict message included, is the
one-by-one path's.

- Into an **empty** ``memories`` table the whole import is one transaction: the secondary indexes
  are dropped, except the unique index of current facts (it upholds the rule during the load), the
  batches are copied, and the indexes are built after the last; other processes see the empty table
  or the full, indexed one.
- Into a table that holds rows, each batch is one transaction and the indexes are kept.

Either way the ``memories`` table is locked against other writers while a batch is checked and
written, so the look-ups stay true until it commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from engram.interfaces import Restored, restore_one
from engram.stores.postgres import rows, tokens
from engram.stores.postgres.bulk import (
    MEMORY_TYPES,
    JsonbText,
    copy_document,
    drop_indexes,
    rebuild_indexes,
    register_dumpers,
)
from engram.stores.postgres.session import PostgresSession
from engram.stores.sql import writes
from engram.types import HistoryEntry, MemoryRecord, RestoredMemory, StoredMessage

if TYPE_CHECKING:
    from engram.stores.postgres.store import PostgresStore

logger = logging.getLogger(__name__)

CURRENT_HASH_INDEX = "memories_current_hash"  # kept through an empty-table load: the rule's guard
_MESSAGE_TYPES = [*["text"] * 11, "timestamptz", "timestamptz"]
_HISTORY_TYPES = [*["text"] * 6, "timestamptz", "text", "text", "jsonb", "int8"]
_WRITTEN = Restored(written=True)


@dataclass(slots=True)
class Counts:
    """What one :func:`restore_many` did, for its log line."""

    copied: int = 0  # memories written with COPY
    one_by_one: int = 0  # memories that went through the rule itself (ids already there, conflicts)
    empty: bool = False  # the table was empty: indexes dropped and built after the load
    copy_seconds: float = 0.0
    index_seconds: float = 0.0


async def restore_many(
    store: PostgresStore, namespace: str, batches: AsyncIterable[Sequence[RestoredMemory]]
) -> AsyncIterator[list[Restored]]:
    """See the module docstring; yields each batch's outcomes once the batch is written."""
    s, counts, started = store._s, Counts(), time.perf_counter()
    async with store._conn() as conn:
        async with conn.transaction():
            counts.empty = await _lock(conn, s)
            if counts.empty:
                dropped = await drop_indexes(conn, s, keep=(CURRENT_HASH_INDEX,))
                async for batch in batches:
                    yield await _restore_batch(store, conn, namespace, batch, counts)
                counts.copy_seconds = time.perf_counter() - started
                await rebuild_indexes(conn, s, dropped)
        if not counts.empty:
            async for batch in batches:
                async with conn.transaction():
                    await _lock(conn, s)
                    outcomes = await _restore_batch(store, conn, namespace, batch, counts)
                store._note_write(namespace)
                yield outcomes
            counts.copy_seconds = time.perf_counter() - started
    store._note_write(namespace)
    store._stats_cache.clear()
    counts.index_seconds = time.perf_counter() - started - counts.copy_seconds
    _log(counts)


async def _lock(conn: Any, schema: str) -> bool:
    """Lock the memories table against other writers; whether it is empty."""
    await conn.execute(f"LOCK TABLE {schema}.memories IN SHARE ROW EXCLUSIVE MODE")
    cur = await conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {schema}.memories)")
    return bool((await cur.fetchone())[0])


def _log(counts: Counts) -> None:
    how = "into an empty table, indexes built after the load" if counts.empty else "indexes kept"
    logger.info(
        "import: %d memories written with COPY and %d one by one (%s); %.1f s writing, %.1f s indexing",
        counts.copied, counts.one_by_one, how, counts.copy_seconds, counts.index_seconds,
    )  # fmt: skip


async def _restore_batch(
    store: PostgresStore, conn: Any, namespace: str, batch: Sequence[RestoredMemory], counts: Counts
) -> list[Restored]:
    """Each memory's outcome, in order: runs of free ones copied, the others through the rule."""
    for memory in batch:
        store._check_dim(memory.vector, "vector")
    taken = await _Taken.look_up(conn, store._s, namespace, batch)
    target = _InTransaction(store, conn)
    run = _Run()
    outcomes: list[Restored] = []
    for memory in batch:
        if taken.free(memory):
            taken.take(memory, run)
            outcomes.append(_WRITTEN)
            continue
        counts.copied += await run.copy(conn, store._s, namespace)
        outcome = await restore_one(target, namespace, memory)
        counts.one_by_one += 1
        if outcome.written:
            taken.take(memory, _Run())  # its messages are stored now (or were already)
        outcomes.append(outcome)
    counts.copied += await run.copy(conn, store._s, namespace)
    return outcomes


@dataclass(slots=True)
class _Taken:
    """What the rule would find taken: looked up for a batch, then grown as the batch is written."""

    ids: set[str]  # memory ids, in any namespace, deleted memories included
    facts: set[tuple[str, str]]  # (scope key, hash) of this namespace's current memories
    history: set[str]  # history ids
    messages: set[str]  # stored message ids

    @classmethod
    async def look_up(cls, conn: Any, schema: str, namespace: str, batch: Sequence[RestoredMemory]) -> _Taken:
        current = [m.record for m in batch if m.record.superseded_by is None]

        async def found(sql: str, *params: Any) -> set[Any]:
            cur = await conn.execute(sql.format(s=schema), params)
            return {row[0] if len(row) == 1 else tuple(row) for row in await cur.fetchall()}

        # One index probe per key (a LATERAL subquery with LIMIT is never turned into a join): the
        # rows this transaction copied have no planner statistics yet, and a guessed hash join would
        # scan the whole table for every batch.
        ids = (
            "SELECT f.id FROM unnest(%%s::text[]) AS f(id), "
            "LATERAL (SELECT 1 FROM {s}.%s t WHERE t.id = f.id LIMIT 1) AS hit"
        )
        facts = (
            "SELECT f.scope_key, f.hash FROM unnest(%s::text[], %s::text[]) AS f(scope_key, hash), LATERAL "
            "(SELECT 1 FROM {s}.memories m WHERE m.namespace = %s AND m.scope_key = f.scope_key "
            "AND m.hash = f.hash AND m.deleted_at IS NULL AND m.superseded_by IS NULL LIMIT 1) AS hit"
        )
        return cls(
            await found(ids % "memories", [m.record.id for m in batch]),
            await found(facts, [r.scope.key() for r in current], [r.hash for r in current], namespace),
            await found(ids % "history", [h.id for m in batch for h in m.history]),
            await found(ids % "messages", [g.id for m in batch for g in m.messages]),
        )

    def free(self, memory: RestoredMemory) -> bool:
        """Whether the rule would simply write ``memory``: no id, fact or history id of it taken."""
        rec = memory.record
        if rec.id in self.ids or (rec.superseded_by is None and (rec.scope.key(), rec.hash) in self.facts):
            return False
        history = {h.id for h in memory.history}
        return len(history) == len(memory.history) and self.history.isdisjoint(history)

    def take(self, memory: RestoredMemory, run: _Run) -> None:
        """Count ``memory`` as written, adding it (and its messages not stored yet) to ``run``."""
        rec = memory.record
        self.ids.add(rec.id)
        if rec.superseded_by is None:
            self.facts.add((rec.scope.key(), rec.hash))
        self.history.update(h.id for h in memory.history)
        run.memories.append(memory)
        for message in memory.messages:
            if message.id not in self.messages:
                self.messages.add(message.id)
                run.messages.append(message)


@dataclass(slots=True)
class _Run:
    """Free memories, in order, waiting to be copied, with the messages they bring."""

    memories: list[RestoredMemory] = field(default_factory=list)
    messages: list[StoredMessage] = field(default_factory=list)

    async def copy(self, conn: Any, schema: str, namespace: str) -> int:
        """COPY the run (then empty it); returns how many memories it held."""
        memories, self.memories = self.memories, []
        messages, self.messages = self.messages, []
        if not memories:
            return 0
        async with conn.cursor() as cur:
            register_dumpers(cur)
            await _copy(cur, f"{schema}.memories ({rows.MEMORY_WRITE_COLUMNS})", MEMORY_TYPES,
                        _memory_rows(namespace, memories))  # fmt: skip
            await _copy(cur, f"{schema}.messages ({rows.MESSAGE_WRITE_COLUMNS})", _MESSAGE_TYPES,
                        (rows.message_row(namespace, g) for g in messages))  # fmt: skip
            await _copy(cur, f"{schema}.memory_sources (memory_id, message_id)", ["text", "text"],
                        _source_rows(memories))  # fmt: skip
            await _copy(cur, f"{schema}.history ({rows.HISTORY_WRITE_COLUMNS}, tx)", _HISTORY_TYPES,
                        _history_rows(namespace, memories))  # fmt: skip
        return len(memories)


def _memory_rows(namespace: str, memories: list[RestoredMemory]) -> Iterator[tuple[Any, ...]]:
    toks = tokens.tokenize_many([m.record.text for m in memories])
    for m, t in zip(memories, toks, strict=True):
        yield rows.memory_row(namespace, m.record, m.vector, *copy_document(t, m.record.scope), JsonbText)


def _source_rows(memories: list[RestoredMemory]) -> Iterator[tuple[str, str]]:
    for m in memories:
        for message_id in dict.fromkeys(g.id for g in m.messages):  # each link once
            yield m.record.id, message_id


def _history_rows(namespace: str, memories: list[RestoredMemory]) -> Iterator[tuple[Any, ...]]:
    """The history rows, with ``tx`` NULL: an import replays no change-feed events."""
    for m in memories:
        for h in m.history:
            entry = h if h.memory_id == m.record.id else replace(h, memory_id=m.record.id)
            yield (*rows.history_row(namespace, entry, JsonbText), None)


async def _copy(cur: Any, target: str, types: list[str], values: Iterator[tuple[Any, ...]]) -> None:
    async with cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in values:
            await copy.write_row(row)


class _InTransaction:
    """The store as :func:`restore_one` sees it, inside the import's transaction: each restore in a
    savepoint, so a conflict undoes that memory only (with the message the store's own path gives)."""

    def __init__(self, store: PostgresStore, conn: Any) -> None:
        self.store, self.conn, self.session = store, conn, PostgresSession(store, conn)

    async def get(self, namespace: str, memory_id: str) -> MemoryRecord | None:
        found = await self.session.records(namespace, [memory_id])
        return found[0] if found else None

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        return await self.session.history(namespace, memory_id)

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        return await self.session.messages_for(namespace, memory_id)

    async def restore(self, namespace: str, memory: RestoredMemory) -> bool:
        async with self.store._guard(), self.conn.transaction():
            return await writes.restore(self.session, namespace, memory)
