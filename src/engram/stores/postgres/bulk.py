"""Bulk loading into the PostgreSQL store with ``COPY`` (imports and the benchmark loader).

:func:`copy_memories` writes many precomputed memories of one namespace in one transaction:

- into an **empty** ``memories`` table it drops the secondary indexes, ``COPY``s the rows straight
  in and builds the indexes afterwards (one sort per index instead of one index insertion per row,
  and one HNSW graph build); the table is locked meanwhile, so other processes see either the empty
  table or the full, indexed one;
- into a table that holds rows it ``COPY``s into a temporary table and inserts from there with the
  same ``ON CONFLICT`` rule as :meth:`~engram.stores.postgres.PostgresStore.add`, indexes kept.

Either way a fact already current in its scope (or given twice) is stored once, every stored memory
gets its ``ADD`` history entry, and source message ids are linked to the memory that holds the fact.
Memories that supersede others are refused: an import loads facts, it does not replay edits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engram.errors import StoreError
from engram.stores.postgres import tokens
from engram.stores.postgres.rows import MEMORY_WRITE_COLUMNS, memory_row
from engram.stores.sql.rows import new_record
from engram.types import NewMemory, Scope, utcnow

if TYPE_CHECKING:
    from engram.stores.postgres.store import PostgresStore

Progress = Callable[[int], None]  # called with the number of memories copied so far

_TSVECTOR_OID = 3614  # built-in types: their oids are fixed
_JSONB_OID = 3802
MEMORY_TYPES = [  # the types of MEMORY_WRITE_COLUMNS, for binary COPY
    *["text"] * 11, "jsonb", "text", "timestamptz", "timestamptz", "timestamptz", "date", "text",
    "timestamptz", "vector", "tsvector", "int4",
]  # fmt: skip
_KEEP_INDEXES = ("memories_pkey", "memories_seq_key")  # constraints: kept through the load
_INDEX_MEMORY = "1GB"
_CURRENT = "deleted_at IS NULL AND superseded_by IS NULL"


class Tsvector(bytes):
    """``tsvector`` binary data (see :func:`tokens.tsvector_binary`)."""


class JsonbText(str):
    """JSON text for a ``jsonb`` column of a binary ``COPY`` (sent as is, not encoded again)."""


@dataclass(frozen=True, slots=True)
class BulkLoad:
    """What :func:`copy_memories` did."""

    loaded: int  # memories stored
    skipped: int  # facts already current in their scope, or given twice
    indexes_rebuilt: bool  # the table was empty: indexes were dropped and built after the load
    copy_seconds: float
    index_seconds: float


async def copy_memories(
    store: PostgresStore,
    namespace: str,
    memories: Iterable[NewMemory],
    *,
    progress: Progress | None = None,
    batch_size: int = 5000,
) -> BulkLoad:
    """Store ``memories`` of ``namespace`` with ``COPY`` in one transaction (see the module doc)."""
    s = store._s
    async with store._conn() as conn, conn.transaction():
        await conn.execute(f"LOCK TABLE {s}.memories IN SHARE ROW EXCLUSIVE MODE")
        cur = await conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {s}.memories)")
        empty = bool((await cur.fetchone())[0])
        dropped = await drop_indexes(conn, s) if empty else []
        target = f"{s}.memories" if empty else "engram_load"
        if not empty:
            await conn.execute(
                f"CREATE TEMP TABLE engram_load (LIKE {s}.memories INCLUDING DEFAULTS) ON COMMIT DROP"
            )
        t0 = time.perf_counter()
        given, sources = await _copy_rows(conn, target, namespace, memories, progress, batch_size)
        loaded = await _store_rows(conn, s, empty)
        copy_seconds = time.perf_counter() - t0
        await _link(conn, s, namespace, sources, f"{s}.memories" if empty else "engram_load")
        t1 = time.perf_counter()
        if empty:
            await rebuild_indexes(conn, s, dropped)
        index_seconds = time.perf_counter() - t1
    store._note_write(namespace)
    store._stats_cache.clear()
    return BulkLoad(loaded, given - loaded, empty, copy_seconds, index_seconds)


async def drop_indexes(conn: Any, schema: str, keep: tuple[str, ...] = ()) -> list[str]:
    """Drop the memories table's secondary indexes (but those in ``keep``); returns the statements
    that build them again."""
    cur = await conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'memories' "
        "AND NOT (indexname = ANY(%s::text[]))",
        (schema, [*_KEEP_INDEXES, *keep]),
    )
    rows = await cur.fetchall()
    for name, _ in rows:
        await conn.execute(f"DROP INDEX {schema}.{name}")
    await conn.execute(  # enough for the HNSW graph of ~1M vectors; a larger server setting is kept
        "SELECT set_config('maintenance_work_mem', %s, true) "
        "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes(%s)",
        (_INDEX_MEMORY, _INDEX_MEMORY),
    )
    return [str(definition) for _, definition in rows]


async def rebuild_indexes(conn: Any, schema: str, statements: list[str]) -> None:
    """Build the indexes :func:`drop_indexes` dropped, then gather the table's planner statistics."""
    for statement in statements:
        await conn.execute(statement)
    await conn.execute(f"ANALYZE {schema}.memories")


async def _copy_rows(
    conn: Any,
    target: str,
    namespace: str,
    memories: Iterable[NewMemory],
    progress: Progress | None,
    batch_size: int,
) -> tuple[int, dict[str, list[str]]]:
    """COPY the distinct facts; returns (memories given, source ids per memory copied)."""
    kept: dict[tuple[str, str], str] = {}  # (scope key, hash) -> id of the memory copied
    sources: dict[str, list[str]] = {}
    given = 0
    async with conn.cursor() as cur:
        register_dumpers(cur)
        async with cur.copy(f"COPY {target} ({MEMORY_WRITE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(MEMORY_TYPES)
            for batch in _batches(memories, batch_size):
                given += len(batch)
                fresh = []
                for mem in batch:
                    _check(mem)
                    key = (mem.scope.key(), mem.hash)
                    if key not in kept:
                        kept[key] = mem.id
                        fresh.append(mem)
                    sources.setdefault(kept[key], []).extend(mem.source_message_ids)
                for row in _rows(namespace, fresh):
                    await copy.write_row(row)
                if progress is not None:
                    progress(given)
    return given, sources


def _check(mem: NewMemory) -> None:
    if mem.supersedes:
        raise StoreError(
            f"memories[].supersedes of {mem.id!r}: a bulk load stores facts and supersedes nothing"
        )


def _batches(memories: Iterable[NewMemory], size: int) -> Iterator[list[NewMemory]]:
    batch: list[NewMemory] = []
    for mem in memories:
        batch.append(mem)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _rows(namespace: str, batch: list[NewMemory]) -> Iterator[tuple[Any, ...]]:
    now = utcnow()
    for mem, toks in zip(batch, tokens.tokenize_many([m.text for m in batch]), strict=True):
        document = copy_document(toks, mem.scope)
        yield memory_row(namespace, new_record(mem, now), mem.vector, *document, JsonbText)


def copy_document(toks: list[tuple[str, int]], scope: Scope) -> tuple[Tsvector, int]:
    """The ``tsv`` and ``doc_len`` of a memory for binary COPY, from its text's tokens."""
    return Tsvector(tokens.tsvector_binary(toks)), len(toks) + len(scope.given())


async def _store_rows(conn: Any, schema: str, empty: bool) -> int:
    """Write the ADD history of the stored rows (moving them in from the temporary table first
    when the target held rows); returns how many were stored."""
    history = (
        f"INSERT INTO {schema}.history (id, namespace, memory_id, event, new_memory, created_at, actor_id, "
        "role) SELECT gen_random_uuid()::text, namespace, id, 'ADD', text, created_at, actor_id, role "
    )
    if empty:
        rows = f"{schema}.memories"
        prefix = ""
    else:
        rows = "ins"
        prefix = (
            f"ins AS (INSERT INTO {schema}.memories ({MEMORY_WRITE_COLUMNS}) "
            f"SELECT {MEMORY_WRITE_COLUMNS} FROM engram_load "
            f"ORDER BY seq ON CONFLICT (namespace, scope_key, hash) WHERE {_CURRENT} DO NOTHING "
            "RETURNING *), "
        )
    cur = await conn.execute(f"WITH {prefix}h AS ({history} FROM {rows} RETURNING 1) SELECT count(*) FROM h")
    return int((await cur.fetchone())[0])


async def _link(conn: Any, schema: str, namespace: str, sources: dict[str, list[str]], load: str) -> None:
    """Link source messages to the current memory holding each copied fact."""
    pairs = [(memory_id, message_id) for memory_id, ids in sources.items() for message_id in ids]
    if not pairs:
        return
    await conn.execute(
        f"INSERT INTO {schema}.memory_sources (memory_id, message_id) "
        f"SELECT m.id, p.message_id FROM unnest(%s::text[], %s::text[]) AS p(memory_id, message_id) "
        f"JOIN {load} l ON l.id = p.memory_id "
        f"JOIN {schema}.memories m ON m.namespace = %s AND m.scope_key = l.scope_key AND m.hash = l.hash "
        f"AND m.{_CURRENT.replace(' AND ', ' AND m.')} ON CONFLICT DO NOTHING",
        ([p[0] for p in pairs], [p[1] for p in pairs], namespace),
    )


def register_dumpers(cur: Any) -> None:
    """Teach ``cur`` (only it) the binary forms of :class:`Tsvector` and :class:`JsonbText`."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class TsvectorBinaryDumper(Dumper):
        format = Format.BINARY
        oid = _TSVECTOR_OID

        def dump(self, obj: Any) -> bytes:
            return bytes(obj)

    class JsonbTextBinaryDumper(Dumper):
        format = Format.BINARY
        oid = _JSONB_OID

        def dump(self, obj: Any) -> bytes:
            return b"\x01" + str(obj).encode("utf-8")  # jsonb's binary format: version 1, then the text

    cur.adapters.register_dumper(Tsvector, TsvectorBinaryDumper)
    cur.adapters.register_dumper(JsonbText, JsonbTextBinaryDumper)
