"""SQLiteStore: the embedded default store (one WAL-mode file; safe across threads and processes)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import Field

from engram.config import default_home
from engram.errors import ConflictError, EmbedderMismatchError, NotFoundError, StoreError
from engram.filters import FilterNode
from engram.interfaces import BackendSettings, ListPage, Store
from engram.stores.sqlite.rows import (
    chunks,
    content_digest,
    fts_delete,
    memory_from_row,
    message_from_row,
    scope_sql,
    scope_tokens,
    where_clause,
)
from engram.stores.sqlite.schema import migrate
from engram.stores.sqlite.search import CandidateSearch
from engram.stores.sqlite.sql_filters import iso
from engram.stores.sqlite.vector_cache import VectorCache
from engram.types import (
    EmbedderInfo,
    HistoryEntry,
    MemoryRecord,
    NewMemory,
    Scope,
    StoredMessage,
    Vector,
    Visibility,
    WriteOutcome,
    utcnow,
)

T = TypeVar("T")
_NEVER = np.iinfo(np.int64).max
_MEMORY_COLUMNS = (
    "m.id, m.text, m.hash, m.user_id, m.agent_id, m.app_id, m.run_id, m.actor_id, m.role, m.metadata, "
    "m.created_at, m.updated_at, m.observed_at, m.expires_at, m.superseded_by, m.valid_until"
)
_MESSAGE_COLUMNS = "id, user_id, agent_id, app_id, run_id, role, name, content, observed_at, created_at"


def _fold(value: str | None) -> str | None:
    """Unicode case folding for icontains (SQLite's lower() folds ASCII only)."""
    return value.casefold() if isinstance(value, str) else value


class SQLiteSettings(BackendSettings):
    """Settings of the embedded store."""

    path: Path | None = Field(None, description="database file; default $ENGRAM_HOME/engram.db")
    busy_timeout_ms: int = Field(60_000, ge=0, description="how long a writer waits for the lock")
    cache_vectors: int = Field(2_000_000, ge=0, description="vectors kept in the in-process search cache")


class SQLiteStore(CandidateSearch, Store):
    """Memories, vectors (float32 blobs), an FTS5 index, history and messages in one SQLite file."""

    Settings = SQLiteSettings

    def __init__(self, settings: SQLiteSettings | None = None, **overrides: Any) -> None:
        base = settings or SQLiteSettings()
        self.settings = (
            SQLiteSettings.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        self._cache = VectorCache(self.settings.cache_vectors)
        self._opened = False
        self._embedder = EmbedderInfo("", 0)
        self._dim = 0

    @property
    def path(self) -> Path:
        return self.settings.path or default_home() / "engram.db"

    # -- plumbing --------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self.settings.busy_timeout_ms / 1000,
                )
                conn.create_function("engram_fold", 1, _fold, deterministic=True)
                conn.execute(f"PRAGMA busy_timeout = {int(self.settings.busy_timeout_ms)}")
                self._use_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as e:
                raise StoreError(f"Cannot open the SQLite store at {self.path}: {e}") from e
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL. Several processes creating the file at once can get SQLITE_BUSY
        here without the busy handler being consulted, so retry until the busy timeout."""
        deadline = time.monotonic() + self.settings.busy_timeout_ms / 1000
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    async def _run(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        """Run blocking store work in a worker thread (``inline`` for short in-memory work)."""
        if not self._opened:
            raise StoreError("The store is not open; call open() first (AsyncMemory does this for you)")
        try:
            return fn(*args) if inline else await asyncio.to_thread(fn, *args)
        except sqlite3.IntegrityError as e:
            raise ConflictError(f"The change conflicts with stored data: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"SQLite error on {self.path}: {e}") from e

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One write transaction that also bumps the store generation; yields (conn, old generation)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            generation = self._generation(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation + 1),))
            yield conn, generation
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- lifecycle -------------------------------------------------------------------------------
    async def open(self, embedder: EmbedderInfo) -> None:
        try:
            await asyncio.to_thread(self._open_sync, embedder)
        except sqlite3.Error as e:
            raise StoreError(f"Cannot open the SQLite store at {self.path}: {e}") from e
        self._opened = True
        self._embedder = embedder
        self._dim = embedder.dim

    def _open_sync(self, embedder: EmbedderInfo) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('embedder', 'dim')"))
            if not rows:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("embedder", embedder.name), ("dim", str(embedder.dim))],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if rows and (rows["embedder"] != embedder.name or int(rows["dim"]) != embedder.dim):
            raise EmbedderMismatchError(
                f"The store at {self.path} was filled by embedder {rows['embedder']!r} "
                f"({rows['dim']} dimensions) but {embedder.name!r} ({embedder.dim} dimensions) is "
                "configured. Vectors of different embedders cannot be compared. Either configure the "
                "original embedder again, or use a new store path (or ENGRAM_HOME), or call reset() "
                "to empty this store and start over with the new embedder.",
                details={"stored": rows, "configured": {"embedder": embedder.name, "dim": embedder.dim}},
            )

    async def close(self) -> None:
        with self._conn_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._cache.clear()
        self._opened = False

    # -- writes ----------------------------------------------------------------------------------
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

    def _check_dim(self, vector: Vector, field: str) -> None:
        if vector.shape != (self._dim,):
            raise StoreError(f"{field} has shape {vector.shape}; this store holds {self._dim}-d vectors")

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
    ) -> MemoryRecord:
        return await self._run(self._update_sync, namespace, memory_id, text, text_hash, vector, metadata)

    def _update_sync(
        self,
        namespace: str,
        memory_id: str,
        text: str | None,
        text_hash: str | None,
        vector: Vector | None,
        metadata: dict[str, Any] | None,
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
            details = {"metadata": metadata} if metadata is not None else {}
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
            record = self._records(conn, namespace, [memory_id])[0]
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

    # -- reads -----------------------------------------------------------------------------------
    async def get(self, namespace: str, memory_id: str) -> MemoryRecord | None:
        found = await self.get_many(namespace, [memory_id])
        return found[0] if found else None

    async def get_many(self, namespace: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
        if not memory_ids:
            return []
        return await self._run(self._get_many_sync, namespace, list(memory_ids))

    def _get_many_sync(self, namespace: str, memory_ids: list[str]) -> list[MemoryRecord]:
        return self._records(self._conn(), namespace, memory_ids)

    def _records(self, conn: sqlite3.Connection, namespace: str, memory_ids: list[str]) -> list[MemoryRecord]:
        by_id: dict[str, MemoryRecord] = {}
        for chunk in chunks(memory_ids):
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {_MEMORY_COLUMNS} FROM memories m "
                f"WHERE +m.namespace = ? AND m.deleted_at IS NULL AND m.id IN ({marks})",
                [namespace, *chunk],
            ):
                by_id[row[0]] = memory_from_row(row)
        self._attach_sources(conn, list(by_id.values()))
        return [by_id[i] for i in memory_ids if i in by_id]

    @staticmethod
    def _attach_sources(conn: sqlite3.Connection, records: list[MemoryRecord]) -> None:
        index = {r.id: r for r in records}
        for chunk in chunks(list(index)):
            marks = ",".join("?" * len(chunk))
            for memory_id, message_id in conn.execute(
                "SELECT s.memory_id, s.message_id FROM memory_sources s "
                f"JOIN messages g ON g.id = s.message_id "
                f"WHERE s.memory_id IN ({marks}) ORDER BY g.seq",
                chunk,
            ):
                index[memory_id].source_message_ids.append(message_id)

    async def list_memories(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        *,
        limit: int,
        offset: int = 0,
    ) -> ListPage:
        return await self._run(self._list_sync, namespace, scope, filters, visibility, limit, offset)

    def _list_sync(
        self,
        namespace: str,
        scope: Scope,
        filters: FilterNode | None,
        visibility: Visibility,
        limit: int,
        offset: int,
    ) -> ListPage:
        where, params = where_clause(namespace, scope, filters, visibility)
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            total = conn.execute(f"SELECT COUNT(*) FROM memories m WHERE {where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where} "
                "ORDER BY m.observed_at DESC, m.seq DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            records = [memory_from_row(r) for r in rows]
            self._attach_sources(conn, records)
        finally:
            conn.execute("COMMIT")
        return ListPage(records, int(total))

    async def history(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        return await self._run(self._history_sync, namespace, memory_id)

    def _history_sync(self, namespace: str, memory_id: str) -> list[HistoryEntry]:
        rows = (
            self._conn()
            .execute(
                "SELECT id, memory_id, event, old_memory, new_memory, created_at, actor_id, role, details "
                "FROM history WHERE namespace = ? AND memory_id = ? ORDER BY seq",
                (namespace, memory_id),
            )
            .fetchall()
        )
        return [
            HistoryEntry(
                r[0], r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5]), r[6], r[7], json.loads(r[8])
            )
            for r in rows
        ]

    async def messages_for(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        return await self._run(self._messages_for_sync, namespace, memory_id)

    def _messages_for_sync(self, namespace: str, memory_id: str) -> list[StoredMessage]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {', '.join('g.' + c.strip() for c in _MESSAGE_COLUMNS.split(','))} "
                "FROM memory_sources s JOIN messages g ON g.id = s.message_id "
                "WHERE s.memory_id = ? AND g.namespace = ? ORDER BY g.seq",
                (memory_id, namespace),
            )
            .fetchall()
        )
        return [message_from_row(r) for r in rows]

    async def recent_messages(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        if limit <= 0:
            return []
        return await self._run(self._recent_sync, namespace, scope, limit)

    def _recent_sync(self, namespace: str, scope: Scope, limit: int) -> list[StoredMessage]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE namespace = ? AND scope_key = ? "
                "ORDER BY seq DESC LIMIT ?",
                (namespace, scope.key(), limit),
            )
            .fetchall()
        )
        return [message_from_row(r) for r in reversed(rows)]

    async def find_by_hash(self, namespace: str, scope: Scope, hashes: Sequence[str]) -> dict[str, str]:
        if not hashes:
            return {}
        return await self._run(self._find_by_hash_sync, namespace, scope, list(hashes))

    def _find_by_hash_sync(self, namespace: str, scope: Scope, hashes: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in chunks(hashes):
            marks = ",".join("?" * len(chunk))
            found.update(
                self._conn()
                .execute(
                    "SELECT hash, id FROM memories WHERE namespace = ? AND scope_key = ? "
                    f"AND hash IN ({marks}) "
                    "AND deleted_at IS NULL AND superseded_by IS NULL",
                    [namespace, scope.key(), *chunk],
                )
                .fetchall()
            )
        return found
