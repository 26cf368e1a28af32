"""SQLiteStore: the embedded default store (one WAL-mode file; safe across threads and processes).

The rules are in :class:`~engram.stores.sql.store.SQLStore`; this class opens the file, runs each
read or write transaction in a worker thread (``BEGIN IMMEDIATE``: one writer at a time, across
processes) on a :class:`~engram.stores.sqlite.session.SQLiteSession`, and keeps the vector cache current.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from engram.config import default_home
from engram.errors import StoreError
from engram.interfaces import BackendSettings
from engram.stores.sql.dialect import Session, run_inline
from engram.stores.sql.reembed import META_KEYS
from engram.stores.sql.store import SQLStore
from engram.stores.sqlite.connection import connect, immediate, translated
from engram.stores.sqlite.schema import migrate
from engram.stores.sqlite.session import SQLiteSession, generation
from engram.stores.sqlite.vector_cache import VectorCache
from engram.types import EmbedderInfo

T = TypeVar("T")


class SQLiteSettings(BackendSettings):
    """Settings of the embedded store."""

    path: Path | None = Field(None, description="database file; default $ENGRAM_HOME/engram.db")
    busy_timeout_ms: int = Field(60_000, ge=0, description="how long a writer waits for the lock")
    cache_vectors: int = Field(2_000_000, ge=0, description="vectors kept in the in-process search cache")


class SQLiteStore(SQLStore):
    """Memories, vectors (float32 blobs), an FTS5 index, history and messages in one SQLite file."""

    Settings = SQLiteSettings
    _remedy = (
        "use a new store path (or ENGRAM_HOME), or call reset() to empty this store and start over "
        "with the new embedder"
    )

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

    @property
    def path(self) -> Path:
        return self.settings.path or default_home() / "engram.db"

    # -- plumbing --------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.settings.busy_timeout_ms)
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking store work in a worker thread, translating SQLite's errors."""
        if not self._opened:
            raise StoreError("The store is not open; call open() first (AsyncMemory does this for you)")
        with translated(self.path):
            return await asyncio.to_thread(fn, *args)

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One write transaction that also bumps the store generation; yields (conn, old generation)."""
        with immediate(self._conn()) as conn:
            old = generation(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(old + 1),))
            yield conn, old

    def _session(self, conn: sqlite3.Connection) -> SQLiteSession:
        return SQLiteSession(conn, self._cache, self._dim)

    async def _read(
        self, namespace: str, fn: Callable[[Session], Awaitable[T]], *, primary: bool = False
    ) -> T:
        return await self._run(lambda: run_inline(fn(self._session(self._conn()))))

    async def _transact(self, namespace: str | None, fn: Callable[[Session], Awaitable[T]]) -> T:
        def go() -> T:
            with self._write() as (conn, old):
                session = self._session(conn)
                result = run_inline(fn(session))
            if session.stale or namespace is None:
                self._cache.clear()
            else:
                self._cache.after_own_add(namespace, old, old + 1, session.added)
            return result

        return await self._run(go)

    # -- lifecycle -------------------------------------------------------------------------------
    async def _prepare(self, embedder: EmbedderInfo) -> dict[str, str]:
        try:
            return await asyncio.to_thread(self._prepare_sync, embedder)
        except sqlite3.Error as e:
            raise StoreError(f"Cannot open the SQLite store at {self.path}: {e}") from e

    def _prepare_sync(self, embedder: EmbedderInfo) -> dict[str, str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        migrate(conn)
        rows = _stored_embedder(conn)
        if rows:  # recorded before: opening only reads (no write lock)
            return rows
        with immediate(conn):  # first open: record it, unless another process just did
            rows = _stored_embedder(conn)
            if not rows:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("embedder", embedder.name), ("dim", str(embedder.dim))],
                )
        return rows

    async def _start(self) -> None:
        self._opened = True

    def _location(self) -> str:
        return f"The store at {self.path}"

    async def close(self) -> None:
        with self._conn_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._cache.clear()
        self._opened = False


def _stored_embedder(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute(f"SELECT key, value FROM meta WHERE key IN {META_KEYS}"))
