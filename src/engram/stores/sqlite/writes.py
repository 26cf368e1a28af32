"""SQL of the SQLite store's writes (the rules are in :mod:`engram.stores.sql.writes`).

Runs inside ``BEGIN IMMEDIATE`` (one writer at a time), so a hash found not current stays so until
commit. Records what the vector cache needs: rows this process added, or that it must be dropped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

from engram.stores.sql.dialect import Deleted, Locked
from engram.stores.sql.rows import content_digest, new_record
from engram.stores.sqlite.reads import SQLiteReads
from engram.stores.sqlite.rows import fts_delete, scope_sql, scope_tokens
from engram.stores.sqlite.sql_filters import iso
from engram.stores.sqlite.vector_cache import VectorCache
from engram.types import EmbedderInfo, HistoryEntry, MemoryRecord, NewMemory, Scope, StoredMessage, Vector

_NEVER = np.iinfo(np.int64).max
_TABLES = ("memories", "vectors", "messages", "memory_sources", "history")


class SQLiteWrites(SQLiteReads):
    def __init__(self, conn: sqlite3.Connection, cache: VectorCache, dim: int) -> None:
        super().__init__(conn, cache, dim)
        self.stale = False  # the vector cache must be dropped after this transaction
        self.added: list[tuple[Scope, str, Vector, int, float]] = []  # rows to append to it otherwise
        self._before_seq = 0

    async def insert_messages(
        self, namespace: str, messages: list[StoredMessage], *, existing_ok: bool = False
    ) -> None:
        self._before_seq = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]
        self.conn.executemany(
            ("INSERT OR IGNORE" if existing_ok else "INSERT")
            + " INTO messages (id, namespace, user_id, agent_id, app_id, run_id, scope_key, role, name, "
            "content, content_hash, observed_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (m.id, namespace, *m.scope.as_tuple(), m.scope.key(), m.role, m.name, m.content,
                 content_digest(m.content), iso(m.observed_at), iso(m.created_at))
                for m in messages
            ],
        )  # fmt: skip

    async def memory_taken(self, memory_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM memories WHERE id = ?", (memory_id,)).fetchone() is not None

    async def current_memory(
        self, namespace: str, scope_key: str, hash_: str, *, exclude: str | None = None, lock: bool = False
    ) -> tuple[str, date | None] | None:
        row = self.conn.execute(
            "SELECT id, expires_at FROM memories WHERE namespace = ? AND scope_key = ? AND hash = ? "
            "AND id IS NOT ? AND deleted_at IS NULL AND superseded_by IS NULL",
            (namespace, scope_key, hash_, exclude),
        ).fetchone()
        return (row[0], date.fromisoformat(row[1]) if row[1] else None) if row else None

    async def derived_memory(
        self, namespace: str, mem: NewMemory, batch_ids: list[str], today: date
    ) -> str | None:
        # Messages stored before this call are those up to the largest seq seen when it began.
        row = self.conn.execute(
            "SELECT m.id FROM messages g JOIN memory_sources s ON s.message_id = g.id "
            "JOIN memories m ON m.id = s.memory_id "
            "WHERE g.namespace = ? AND g.scope_key = ? AND g.content_hash = ? AND g.seq <= ? "
            "AND m.deleted_at IS NULL AND m.superseded_by IS NULL "
            "AND (m.expires_at IS NULL OR m.expires_at >= ?) AND NOT EXISTS (SELECT 1 FROM history h "
            "WHERE h.memory_id = m.id AND h.event = 'UPDATE' AND h.old_memory IS NOT h.new_memory) "
            "ORDER BY m.seq LIMIT 1",
            [namespace, mem.scope.key(), content_digest(mem.text), self._before_seq, today.isoformat()],
        ).fetchone()
        return str(row[0]) if row else None

    async def insert_memory(self, namespace: str, mem: NewMemory, now: datetime) -> bool:
        vector = np.asarray(mem.vector, dtype=np.float32)
        self._insert_row(namespace, new_record(mem, now), vector)
        expires = mem.expires_at.toordinal() if mem.expires_at else _NEVER
        self.added.append((mem.scope, mem.id, vector, expires, mem.observed_at.timestamp()))
        return True

    async def restore_memory(self, namespace: str, rec: MemoryRecord, vector: Vector) -> None:
        self._insert_row(namespace, rec, np.asarray(vector, dtype=np.float32))
        self.stale = True  # superseded or expired rows are not appended to the vector cache

    def _insert_row(self, namespace: str, rec: MemoryRecord, vector: Vector) -> None:
        """The memory row, its vector and its keyword index."""
        tokens = scope_tokens(namespace, rec.scope)
        cursor = self.conn.execute(
            "INSERT INTO memories (id, namespace, user_id, agent_id, app_id, run_id, scope_key, text, hash, "
            "actor_id, role, metadata, created_at, updated_at, observed_at, expires_at, superseded_by, "
            "valid_until, scope_tokens) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (rec.id, namespace, *rec.scope.as_tuple(), rec.scope.key(), rec.text, rec.hash, rec.actor_id,
             rec.role, json.dumps(rec.metadata), iso(rec.created_at),
             iso(rec.updated_at) if rec.updated_at else None, iso(rec.observed_at),
             rec.expires_at.isoformat() if rec.expires_at else None, rec.superseded_by,
             iso(rec.valid_until) if rec.valid_until else None, tokens),
        )  # fmt: skip
        self.conn.execute(
            "INSERT INTO vectors (seq, embedding) VALUES (?, ?)", (cursor.lastrowid, vector.tobytes())
        )
        self.conn.execute(
            "INSERT INTO memories_fts (rowid, text, scope_tokens) VALUES (?, ?, ?)",
            (cursor.lastrowid, rec.text, tokens),
        )

    async def supersede(self, namespace: str, old_id: str, new_id: str, now: datetime) -> str | None:
        row = self.conn.execute(
            "SELECT text FROM memories WHERE id = ? AND +namespace = ? AND deleted_at IS NULL "
            "AND superseded_by IS NULL",
            (old_id, namespace),
        ).fetchone()
        if row is None:
            return None
        self.conn.execute(
            "UPDATE memories SET superseded_by = ?, valid_until = ? WHERE id = ?", (new_id, iso(now), old_id)
        )
        self.stale = True
        return str(row[0])

    async def link_sources(self, memory_id: str, message_ids: Sequence[str]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO memory_sources (memory_id, message_id) VALUES (?, ?)",
            [(memory_id, mid) for mid in message_ids],
        )

    async def add_history(self, namespace: str, e: HistoryEntry) -> None:
        self.conn.execute(
            "INSERT INTO history (id, namespace, memory_id, event, old_memory, new_memory, created_at, "
            "actor_id, role, details) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (e.id, namespace, e.memory_id, e.event, e.old_memory, e.new_memory, iso(e.created_at), e.actor_id,
             e.role, json.dumps(e.details)),
        )  # fmt: skip

    async def lock_memory(self, namespace: str, memory_id: str) -> Locked | None:
        row = self.conn.execute(
            "SELECT seq, text, scope_key, actor_id, role FROM memories "
            "WHERE id = ? AND +namespace = ? AND deleted_at IS NULL",
            (memory_id, namespace),
        ).fetchone()
        self.stale = True
        return Locked(row[1], row[2], row[3], row[4], key=row[0]) if row else None

    async def set_text(self, row: Locked, text: str, text_hash: str, vector: Vector, now: datetime) -> None:
        tokens = fts_delete(self.conn, row.key)
        self.conn.execute(
            "INSERT INTO memories_fts (rowid, text, scope_tokens) VALUES (?, ?, ?)", (row.key, text, tokens)
        )
        self.conn.execute(
            "UPDATE memories SET text = ?, hash = ?, updated_at = ? WHERE seq = ?",
            (text, text_hash, iso(now), row.key),
        )
        self.conn.execute(
            "UPDATE vectors SET embedding = ? WHERE seq = ?",
            (np.asarray(vector, dtype=np.float32).tobytes(), row.key),
        )

    async def set_metadata(self, row: Locked, metadata: dict[str, Any], now: datetime) -> None:
        self.conn.execute(
            "UPDATE memories SET metadata = ?, updated_at = ? WHERE seq = ?",
            (json.dumps(metadata), iso(now), row.key),
        )

    async def set_expiry(self, row: Locked, expires_at: date | None, now: datetime) -> None:
        self.conn.execute(
            "UPDATE memories SET expires_at = ?, updated_at = ? WHERE seq = ?",
            (expires_at.isoformat() if expires_at else None, iso(now), row.key),
        )
        self.stale = True  # the vector cache holds each memory's expiry

    async def mark_deleted(self, namespace: str, target: str | Scope, now: datetime) -> list[Deleted]:
        where, params = ("m.id = ?", [target]) if isinstance(target, str) else scope_sql(target)
        rows = self.conn.execute(
            f"SELECT m.seq, m.id, m.text, m.actor_id, m.role FROM memories m "
            f"WHERE m.namespace = ? AND m.deleted_at IS NULL AND {where}",
            [namespace, *params],
        ).fetchall()
        for seq, *_ in rows:
            fts_delete(self.conn, seq)
            self.conn.execute("UPDATE memories SET deleted_at = ? WHERE seq = ?", (iso(now), seq))
        self.stale |= bool(rows)
        return [(r[1], r[2], r[3], r[4]) for r in rows]

    async def reset(self, namespace: str | None, embedder: EmbedderInfo) -> None:
        self.stale = True
        if namespace is None:
            self.conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('delete-all')")
            for table in _TABLES:
                self.conn.execute(f"DELETE FROM {table}")
            self.conn.execute("DELETE FROM meta WHERE key IN ('embedder', 'dim')")
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('embedder', ?), ('dim', ?)",
                (embedder.name, str(embedder.dim)),
            )
            return
        seqs = self.conn.execute(
            "SELECT seq FROM memories WHERE namespace = ? AND deleted_at IS NULL", (namespace,)
        )
        for (seq,) in seqs.fetchall():
            fts_delete(self.conn, seq)
        in_namespace = "IN (SELECT {} FROM memories WHERE namespace = ?)"
        self.conn.execute(
            f"DELETE FROM memory_sources WHERE memory_id {in_namespace.format('id')}", (namespace,)
        )
        self.conn.execute(f"DELETE FROM vectors WHERE seq {in_namespace.format('seq')}", (namespace,))
        for table in ("memories", "messages", "history"):
            self.conn.execute(f"DELETE FROM {table} WHERE namespace = ?", (namespace,))

    async def set_vectors(self, vectors: list[tuple[int, Vector]]) -> None:
        self.stale = True
        self.conn.executemany(
            "UPDATE vectors SET embedding = ? WHERE seq = ?",
            [(np.asarray(v, dtype=np.float32).tobytes(), seq) for seq, v in vectors],
        )

    async def type_vectors(self, dim: int | None) -> None:
        """Blobs have no declared size: nothing to do."""
