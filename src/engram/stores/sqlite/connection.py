"""Opening a SQLite file the way Engram uses it (WAL, busy timeout, case folding), shared by the store
and the server state."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engram.errors import ConflictError, StoreError


def _fold(value: str | None) -> str | None:
    """Unicode case folding for icontains (SQLite's lower() folds ASCII only)."""
    return value.casefold() if isinstance(value, str) else value


def connect(
    path: Path, busy_timeout_ms: int, synchronous: str = "NORMAL", what: str = "store"
) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) usable from any thread; StoreError if not."""
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        conn.create_function("engram_fold", 1, _fold, deterministic=True)
        conn.create_function("engram_now", 0, time.time)  # the clock of the server state's leases
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _use_wal(conn, busy_timeout_ms)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except sqlite3.Error as e:
        raise StoreError(f"Cannot open the SQLite {what} at {path}: {e}") from e
    return conn


def _use_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch the file to WAL. Several processes creating the file at once can get SQLITE_BUSY
    here without the busy handler being consulted, so retry until the busy timeout."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken at once, across processes)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextmanager
def translated(path: Path) -> Iterator[None]:
    """Turn SQLite's errors into Engram's (``raise ... from e``)."""
    try:
        yield
    except sqlite3.IntegrityError as e:
        raise ConflictError(f"The change conflicts with stored data: {e}") from e
    except sqlite3.Error as e:
        raise StoreError(f"SQLite error on {path}: {e}") from e
