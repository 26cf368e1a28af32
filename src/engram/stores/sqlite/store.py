"""SQLiteStore: the embedded default store (one WAL-mode file; safe across threads and processes)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from engram.config import default_home
from engram.errors import ConflictError, EmbedderMismatchError, StoreError
from engram.interfaces import BackendSettings, Store
from engram.stores.sqlite.derived import DerivedTables
from engram.stores.sqlite.reads import MemoryReads
from engram.stores.sqlite.schema import migrate
from engram.stores.sqlite.search import CandidateSearch
from engram.stores.sqlite.vector_cache import VectorCache
from engram.stores.sqlite.writes import MemoryWrites
from engram.types import EmbedderInfo, Vector

T = TypeVar("T")


def _fold(value: str | None) -> str | None:
    """Unicode case folding for icontains (SQLite's lower() folds ASCII only)."""
    return value.casefold() if isinstance(value, str) else value


class SQLiteSettings(BackendSettings):
    """Settings of the embedded store."""

    path: Path | None = Field(None, description="database file; default $ENGRAM_HOME/engram.db")
    busy_timeout_ms: int = Field(60_000, ge=0, description="how long a writer waits for the lock")
    cache_vectors: int = Field(2_000_000, ge=0, description="vectors kept in the in-process search cache")


class SQLiteStore(DerivedTables, MemoryWrites, MemoryReads, CandidateSearch, Store):
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

    def _check_dim(self, vector: Vector, field: str) -> None:
        if vector.shape != (self._dim,):
            raise StoreError(f"{field} has shape {vector.shape}; this store holds {self._dim}-d vectors")

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
