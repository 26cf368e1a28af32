"""Writes of the SQLite store: add (with duplicate and supersede handling), update, delete, reset."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, TypeVar

import numpy as np

from engram.errors import ConflictError, NotFoundError, StoreError
from engram.stores.sqlite.reads import load_records
from engram.stores.sqlite.rows import content_digest, fts_delete, scope_sql, scope_tokens
from engram.stores.sqlite.sql_filters import iso
from engram.stores.sqlite.vector_cache import VectorCache
from engram.types import (
    EmbedderInfo,
    MemoryRecord,
    NewMemory,
    Scope,
    StoredMessage,
    Vector,
    WriteOutcome,
    utcnow,
)

T = TypeVar("T")
_NEVER = np.iinfo(np.int64).max


class MemoryWrites:
    """Mixed into :class:`SQLiteStore`; relies on its runner, write transaction and vector cache."""

    _cache: VectorCache
    _embedder: EmbedderInfo

    async def _run(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[tuple[sqlite3.Connection, int]]:
        raise NotImplementedError

    def _check_dim(self, vector: Vector, field: str) -> None:
        raise NotImplementedError

    async def add(
        self, namespace: str, messages: Sequence[StoredMessage], memories: Sequence[NewMemory]
    ) -> list[WriteOutcome]:
        return await self._run(self._add_sync, namespace, list(messages), list(memories))

    def _add_sync(
        self, namespace: str, messages: list[StoredMessage], memories: list[NewMemory]
    ) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = []
        cached_rows: list[tuple[Scope, str, Vector, int, float]] = []
        superseded_any = False
        with self._write() as (conn, generation):
            before_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]
            conn.executemany(
                "INSERT INTO messages (id, namespace, user_id, agent_id, app_id, run_id, scope_key, role, "
                "name, content, content_hash, observed_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        m.id,
                        namespace,
                        *m.scope.as_tuple(),
                        m.scope.key(),
                        m.role,
                        m.name,
                        m.content,
                        content_digest(m.content),
                        iso(m.observed_at),
                        iso(m.created_at),
                    )
                    for m in messages
                ],
            )
            now = iso(utcnow())
            today = utcnow().date().isoformat()
            for mem in memories:
                tokens = scope_tokens(namespace, mem.scope)
                self._check_dim(mem.vector, "memories[].vector")
                existing = conn.execute(
                    "SELECT id, expires_at FROM memories WHERE namespace = ? AND scope_key = ? AND hash = ? "
                    "AND deleted_at IS NULL AND superseded_by IS NULL",
                    (namespace, mem.scope.key(), mem.hash),
                ).fetchone()
                if existing is not None and existing[1] is not None and existing[1] < today:
                    # the same fact again after it expired: the new memory supersedes the expired one
                    superseded_any |= self._supersede(conn, namespace, existing[0], mem, now)
                    existing = None
                if existing is None and mem.raw:
                    existing = self._derived_from_earlier_message(conn, namespace, mem, before_seq, today)
                if existing is not None:
                    self._link_sources(conn, existing[0], mem.source_message_ids)
                    outcomes.append(WriteOutcome(existing[0], mem.text, "NONE", existing_id=existing[0]))
                    continue
                cursor = conn.execute(
                    "INSERT INTO memories (id, namespace, user_id, agent_id, app_id, run_id, scope_key, "
                    "text, hash, actor_id, role, metadata, created_at, observed_at, expires_at, "
                    "scope_tokens) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        mem.id,
                        namespace,
                        *mem.scope.as_tuple(),
                        mem.scope.key(),
                        mem.text,
                        mem.hash,
                        mem.actor_id,
                        mem.role,
                        json.dumps(mem.metadata),
                        now,
                        iso(mem.observed_at),
                        mem.expires_at.isoformat() if mem.expires_at else None,
                        tokens,
                    ),
                )
                conn.execute(
                    "INSERT INTO vectors (seq, embedding) VALUES (?, ?)",
                    (cursor.lastrowid, np.asarray(mem.vector, dtype=np.float32).tobytes()),
                )
                conn.execute(
                    "INSERT INTO memories_fts (rowid, text, scope_tokens) VALUES (?, ?, ?)",
                    (cursor.lastrowid, mem.text, tokens),
                )
                self._link_sources(conn, mem.id, mem.source_message_ids)
                self._history(conn, namespace, mem.id, "ADD", None, mem.text, now, mem.actor_id, mem.role)
                for old_id in mem.supersedes:
                    superseded_any |= self._supersede(conn, namespace, old_id, mem, now)
                outcomes.append(WriteOutcome(mem.id, mem.text, "ADD"))
                expires = mem.expires_at.toordinal() if mem.expires_at else _NEVER
                cached_rows.append(
                    (
                        mem.scope,
                        mem.id,
                        np.asarray(mem.vector, dtype=np.float32),
                        expires,
                        mem.observed_at.timestamp(),
                    )
                )
        if superseded_any:
            self._cache.clear()
        else:
            self._cache.after_own_add(namespace, generation, generation + 1, cached_rows)
        return outcomes

    @staticmethod
    def _derived_from_earlier_message(
        conn: sqlite3.Connection, namespace: str, mem: NewMemory, before_seq: int, today: str
    ) -> tuple[str] | None:
        """A current memory extracted from an earlier message with exactly this text, if any.

        Only messages stored before this call count (``seq <= before_seq``). Memories whose text was
        edited since, or that expired, no longer speak for that message.
        """
        row = conn.execute(
            "SELECT m.id FROM messages g JOIN memory_sources s ON s.message_id = g.id "
            "JOIN memories m ON m.id = s.memory_id "
            "WHERE g.namespace = ? AND g.scope_key = ? AND g.content_hash = ? AND g.seq <= ? "
            "AND m.deleted_at IS NULL AND m.superseded_by IS NULL "
            "AND (m.expires_at IS NULL OR m.expires_at >= ?) AND NOT EXISTS (SELECT 1 FROM history h "
            "WHERE h.memory_id = m.id AND h.event = 'UPDATE' AND h.old_memory IS NOT h.new_memory) "
            "ORDER BY m.seq LIMIT 1",
            [namespace, mem.scope.key(), content_digest(mem.text), before_seq, today],
        ).fetchone()
        return (str(row[0]),) if row else None

    def _supersede(
        self, conn: sqlite3.Connection, namespace: str, old_id: str, new: NewMemory, now: str
    ) -> bool:
        row = conn.execute(
            "SELECT text FROM memories WHERE id = ? AND +namespace = ? AND deleted_at IS NULL "
            "AND superseded_by IS NULL",
            (old_id, namespace),
        ).fetchone()
        if row is None:
            return False
        conn.execute(
            "UPDATE memories SET superseded_by = ?, valid_until = ? WHERE id = ?", (new.id, now, old_id)
        )
        self._history(
            conn,
            namespace,
            old_id,
            "SUPERSEDE",
            row[0],
            new.text,
            now,
            new.actor_id,
            new.role,
            {"superseded_by": new.id},
        )
        return True

    @staticmethod
    def _link_sources(conn: sqlite3.Connection, memory_id: str, message_ids: Sequence[str]) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO memory_sources (memory_id, message_id) VALUES (?, ?)",
            [(memory_id, mid) for mid in message_ids],
        )

    @staticmethod
    def _history(
        conn: sqlite3.Connection,
        namespace: str,
        memory_id: str,
        event: str,
        old: str | None,
        new: str | None,
        at: str,
        actor_id: str | None = None,
        role: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO history (id, namespace, memory_id, event, old_memory, new_memory, created_at, "
            "actor_id, role, details) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                str(uuid.uuid4()),
                namespace,
                memory_id,
                event,
                old,
                new,
                at,
                actor_id,
                role,
                json.dumps(details or {}),
            ),
        )

    async def update(
        self,
        namespace: str,
        memory_id: str,
        *,
        text: str | None = None,
        text_hash: str | None = None,
        vector: Vector | None = None,
        metadata: dict[str, Any] | None = None,
        expires_at: date | None = None,
        clear_expiry: bool = False,
    ) -> MemoryRecord:
        expiry = (expires_at,) if expires_at is not None or clear_expiry else None
        return await self._run(
            self._update_sync, namespace, memory_id, text, text_hash, vector, metadata, expiry
        )

    def _update_sync(
        self,
        namespace: str,
        memory_id: str,
        text: str | None,
        text_hash: str | None,
        vector: Vector | None,
        metadata: dict[str, Any] | None,
        expiry: tuple[date | None] | None = None,
    ) -> MemoryRecord:
        with self._write() as (conn, _):
            row = conn.execute(
                "SELECT seq, text, scope_key, actor_id, role FROM memories "
                "WHERE id = ? AND +namespace = ? AND deleted_at IS NULL",
                (memory_id, namespace),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"Memory {memory_id!r} not found", details={"memory_id": memory_id})
            seq, old_text, scope_key, actor_id, role = row
            now = iso(utcnow())
            if text is not None:
                if text_hash is None or vector is None:
                    raise StoreError("update with text needs its hash and vector")
                self._check_dim(vector, "vector")
                clash = conn.execute(
                    "SELECT id FROM memories WHERE namespace = ? AND scope_key = ? AND hash = ? AND id != ? "
                    "AND deleted_at IS NULL AND superseded_by IS NULL",
                    (namespace, scope_key, text_hash, memory_id),
                ).fetchone()
                if clash is not None:
                    raise ConflictError(
                        f"Memory {clash[0]!r} in the same scope already says this",
                        details={"existing_id": clash[0]},
                    )
                tokens = fts_delete(conn, seq)
                conn.execute(
                    "INSERT INTO memories_fts (rowid, text, scope_tokens) VALUES (?, ?, ?)",
                    (seq, text, tokens),
                )
                conn.execute(
                    "UPDATE memories SET text = ?, hash = ?, updated_at = ? WHERE seq = ?",
                    (text, text_hash, now, seq),
                )
                conn.execute(
                    "UPDATE vectors SET embedding = ? WHERE seq = ?",
                    (np.asarray(vector, dtype=np.float32).tobytes(), seq),
                )
            if metadata is not None:
                conn.execute(
                    "UPDATE memories SET metadata = ?, updated_at = ? WHERE seq = ?",
                    (json.dumps(metadata), now, seq),
                )
            details: dict[str, Any] = {"metadata": metadata} if metadata is not None else {}
            if expiry is not None:
                (when,) = expiry
                conn.execute(
                    "UPDATE memories SET expires_at = ?, updated_at = ? WHERE seq = ?",
                    (when.isoformat() if when else None, now, seq),
                )
                details["expiration_date"] = when.isoformat() if when else None
            self._history(
                conn,
                namespace,
                memory_id,
                "UPDATE",
                old_text,
                text if text is not None else old_text,
                now,
                actor_id,
                role,
                details,
            )
            record = load_records(conn, namespace, [memory_id])[0]
        self._cache.clear()
        return record

    async def delete(self, namespace: str, memory_id: str) -> None:
        count = await self._run(self._delete_sync, namespace, "m.id = ?", [memory_id])
        if count == 0:
            raise NotFoundError(f"Memory {memory_id!r} not found", details={"memory_id": memory_id})

    async def delete_scope(self, namespace: str, scope: Scope) -> int:
        if scope.is_empty():
            raise StoreError("delete_scope needs a non-empty scope")
        where, params = scope_sql(scope)
        return await self._run(self._delete_sync, namespace, where, params)

    def _delete_sync(self, namespace: str, where: str, params: list[Any]) -> int:
        with self._write() as (conn, _):
            rows = conn.execute(
                f"SELECT m.seq, m.id, m.text, m.actor_id, m.role FROM memories m "
                f"WHERE m.namespace = ? AND m.deleted_at IS NULL AND {where}",
                [namespace, *params],
            ).fetchall()
            now = iso(utcnow())
            for seq, memory_id, text, actor_id, role in rows:
                fts_delete(conn, seq)
                conn.execute("UPDATE memories SET deleted_at = ? WHERE seq = ?", (now, seq))
                self._history(conn, namespace, memory_id, "DELETE", text, None, now, actor_id, role)
        if rows:
            self._cache.clear()
        return len(rows)

    async def reset(self, namespace: str | None = None) -> None:
        await self._run(self._reset_sync, namespace)

    def _reset_sync(self, namespace: str | None) -> None:
        with self._write() as (conn, _):
            if namespace is None:
                conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('delete-all')")
                for table in ("memories", "vectors", "messages", "memory_sources", "history"):
                    conn.execute(f"DELETE FROM {table}")
                conn.execute("DELETE FROM meta WHERE key IN ('embedder', 'dim')")
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('embedder', ?), ('dim', ?)",
                    (self._embedder.name, str(self._embedder.dim)),
                )
            else:
                for (seq,) in conn.execute(
                    "SELECT seq FROM memories WHERE namespace = ? AND deleted_at IS NULL", (namespace,)
                ).fetchall():
                    fts_delete(conn, seq)
                conn.execute(
                    "DELETE FROM memory_sources WHERE memory_id IN "
                    "(SELECT id FROM memories WHERE namespace = ?)",
                    (namespace,),
                )
                conn.execute(
                    "DELETE FROM vectors WHERE seq IN (SELECT seq FROM memories WHERE namespace = ?)",
                    (namespace,),
                )
                for table in ("memories", "messages", "history"):
                    conn.execute(f"DELETE FROM {table} WHERE namespace = ?", (namespace,))
        self._cache.clear()
