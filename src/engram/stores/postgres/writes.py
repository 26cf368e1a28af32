"""SQL of the PostgreSQL store's writes (the rules are in :mod:`engram.stores.sql.writes`).

Every write is one transaction on the primary (see :meth:`PostgresConnection._write`); identical
concurrent adds are stopped by the partial unique index (``INSERT ... ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

from engram.stores.postgres import tokens
from engram.stores.postgres.reads import PostgresReads
from engram.stores.postgres.rows import (
    HISTORY_WRITE_COLUMNS,
    MEMORY_WRITE_COLUMNS,
    MESSAGE_WRITE_COLUMNS,
    history_row,
    memory_row,
    message_row,
)
from engram.stores.sql.dialect import Deleted, Locked, scope_clauses
from engram.stores.sql.rows import content_digest, new_record
from engram.types import EmbedderInfo, HistoryEntry, MemoryRecord, NewMemory, Scope, StoredMessage, Vector

_CURRENT = "deleted_at IS NULL AND superseded_by IS NULL"


def _params(n: int) -> str:
    return ",".join(["%s"] * n)


class PostgresWrites(PostgresReads):
    async def insert_messages(
        self, namespace: str, messages: list[StoredMessage], *, existing_ok: bool = False
    ) -> None:
        if not messages:
            return
        async with self.conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {self.s}.messages ({MESSAGE_WRITE_COLUMNS}) VALUES ({_params(13)})"
                + (" ON CONFLICT (id) DO NOTHING" if existing_ok else ""),
                [message_row(namespace, m) for m in messages],
            )

    async def memory_taken(self, memory_id: str) -> bool:
        cur = await self.conn.execute(f"SELECT 1 FROM {self.s}.memories WHERE id = %s", (memory_id,))
        return await cur.fetchone() is not None

    async def current_memory(
        self, namespace: str, scope_key: str, hash_: str, *, exclude: str | None = None, lock: bool = False
    ) -> tuple[str, date | None] | None:
        cur = await self.conn.execute(
            f"SELECT id, expires_at FROM {self.s}.memories WHERE namespace = %s AND scope_key = %s "
            f"AND hash = %s AND id IS DISTINCT FROM %s AND {_CURRENT}" + (" FOR UPDATE" if lock else ""),
            (namespace, scope_key, hash_, exclude),
        )
        row = await cur.fetchone()
        return (str(row[0]), row[1]) if row else None

    async def derived_memory(
        self, namespace: str, mem: NewMemory, batch_ids: list[str], today: date
    ) -> str | None:
        s = self.s
        cur = await self.conn.execute(
            # The earlier messages first, whatever the planner's statistics say (fresh tables have
            # none): they are found by an index and are usually none at all.
            f"WITH g AS MATERIALIZED (SELECT id FROM {s}.messages WHERE namespace = %s AND scope_key = %s "
            "AND content_hash = %s AND content = %s AND NOT (id = ANY(%s::text[]))) "
            f"SELECT m.id FROM g JOIN {s}.memory_sources ms ON ms.message_id = g.id "
            f"JOIN {s}.memories m ON m.id = ms.memory_id "
            "WHERE m.deleted_at IS NULL AND m.superseded_by IS NULL "
            "AND (m.expires_at IS NULL OR m.expires_at >= %s) "
            f"AND NOT EXISTS (SELECT 1 FROM {s}.history h WHERE h.memory_id = m.id AND h.event = 'UPDATE' "
            "AND h.old_memory IS DISTINCT FROM h.new_memory) "
            "ORDER BY m.seq LIMIT 1",
            (namespace, mem.scope.key(), content_digest(mem.text), mem.text, batch_ids, today),
        )
        row = await cur.fetchone()
        return str(row[0]) if row else None

    async def insert_memory(self, namespace: str, mem: NewMemory, now: datetime) -> bool:
        on_conflict = f"ON CONFLICT (namespace, scope_key, hash) WHERE {_CURRENT} DO NOTHING RETURNING id"
        cur = await self._insert_row(namespace, new_record(mem, now), mem.vector, on_conflict)
        return await cur.fetchone() is not None

    async def restore_memory(self, namespace: str, rec: MemoryRecord, vector: Vector) -> None:
        await self._insert_row(namespace, rec, vector, "")

    async def _insert_row(self, namespace: str, rec: MemoryRecord, vector: Vector, on_conflict: str) -> Any:
        """The memory row with its vector and keyword document; the cursor."""
        values = _params(12) + "::jsonb," + _params(8) + ",%s::tsvector,%s"
        document = tokens.document(rec.text, len(rec.scope.given()))
        return await self.conn.execute(
            f"INSERT INTO {self.s}.memories ({MEMORY_WRITE_COLUMNS}) VALUES ({values}) {on_conflict}",
            memory_row(namespace, rec, vector, *document),
        )

    async def supersede(self, namespace: str, old_id: str, new_id: str, now: datetime) -> str | None:
        cur = await self.conn.execute(
            f"UPDATE {self.s}.memories SET superseded_by = %s, valid_until = %s "
            f"WHERE id = %s AND namespace = %s AND {_CURRENT} RETURNING text",
            (new_id, now, old_id, namespace),
        )
        row = await cur.fetchone()
        return str(row[0]) if row else None

    async def link_sources(self, memory_id: str, message_ids: Sequence[str]) -> None:
        if message_ids:
            await self.conn.execute(
                f"INSERT INTO {self.s}.memory_sources (memory_id, message_id) "
                "SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                (memory_id, list(message_ids)),
            )

    async def add_history(self, namespace: str, e: HistoryEntry) -> None:
        await self.conn.execute(
            f"INSERT INTO {self.s}.history ({HISTORY_WRITE_COLUMNS}) VALUES ({_params(9)},%s::jsonb)",
            history_row(namespace, e),
        )

    async def lock_memory(self, namespace: str, memory_id: str) -> Locked | None:
        cur = await self.conn.execute(
            "SELECT text, scope_key, actor_id, role, num_nonnulls(user_id, agent_id, app_id, run_id) "
            f"FROM {self.s}.memories WHERE id = %s AND namespace = %s AND deleted_at IS NULL FOR UPDATE",
            (memory_id, namespace),
        )
        row = await cur.fetchone()
        return Locked(row[0], row[1], row[2], row[3], key=(memory_id, row[4])) if row else None

    async def set_text(self, row: Locked, text: str, text_hash: str, vector: Vector, now: datetime) -> None:
        memory_id, scope_ids = row.key
        tsv, doc_len = tokens.document(text, scope_ids)
        await self.conn.execute(
            f"UPDATE {self.s}.memories SET text = %s, hash = %s, embedding = %s, updated_at = %s, "
            "tsv = %s::tsvector, doc_len = %s WHERE id = %s",
            (text, text_hash, np.asarray(vector, dtype=np.float32), now, tsv, doc_len, memory_id),
        )

    async def set_metadata(self, row: Locked, metadata: dict[str, Any], now: datetime) -> None:
        await self.conn.execute(
            f"UPDATE {self.s}.memories SET metadata = %s::jsonb, metadata_text = %s, updated_at = %s "
            "WHERE id = %s",
            (json.dumps(metadata), json.dumps(metadata), now, row.key[0]),
        )

    async def set_expiry(self, row: Locked, expires_at: date | None, now: datetime) -> None:
        await self.conn.execute(
            f"UPDATE {self.s}.memories SET expires_at = %s, updated_at = %s WHERE id = %s",
            (expires_at, now, row.key[0]),
        )

    async def mark_deleted(self, namespace: str, target: str | Scope, now: datetime) -> list[Deleted]:
        if isinstance(target, str):
            where, params = "m.id = %s", [target]
        else:
            clauses, scope_params = scope_clauses(namespace, target, "%s")
            where, params = " AND ".join(clauses[2:]), scope_params[1:]  # namespace and deleted_at below
        cur = await self.conn.execute(
            f"UPDATE {self.s}.memories m SET deleted_at = %s "
            f"WHERE m.namespace = %s AND m.deleted_at IS NULL AND {where} "
            "RETURNING m.id, m.text, m.actor_id, m.role",
            [now, namespace, *params],
        )
        rows = [(str(r[0]), str(r[1]), r[2], r[3]) for r in await cur.fetchall()]
        if rows:
            self.store._stats_cache.clear()
        return rows

    async def reset(self, namespace: str | None, embedder: EmbedderInfo) -> None:
        s = self.s
        self.store._stats_cache.clear()
        if namespace is None:
            await self.conn.execute(f"TRUNCATE {s}.memories, {s}.messages, {s}.memory_sources, {s}.history")
            return
        await self.conn.execute(
            f"DELETE FROM {s}.memory_sources WHERE memory_id IN "
            f"(SELECT id FROM {s}.memories WHERE namespace = %s)",
            (namespace,),
        )
        for table in ("memories", "messages", "history"):
            await self.conn.execute(f"DELETE FROM {s}.{table} WHERE namespace = %s", (namespace,))

    async def set_vectors(self, vectors: list[tuple[int, Vector]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(
                f"UPDATE {self.s}.memories SET embedding = %s WHERE seq = %s",
                [(np.asarray(v, dtype=np.float32), seq) for seq, v in vectors],
            )

    async def type_vectors(self, dim: int | None) -> None:
        await self.store.type_vectors(self.conn, dim)
