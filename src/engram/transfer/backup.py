"""Online backups of the embedded store with SQLite's backup API (consistent while writers are busy)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from engram.errors import ConfigError, StoreError, ValidationError


def store_file() -> Path:
    """The embedded store's file as configured by default (``$ENGRAM_HOME/engram.db``)."""
    if os.environ.get("ENGRAM_DATABASE_URL"):
        raise ConfigError(
            "the store is PostgreSQL (ENGRAM_DATABASE_URL): back it up with pg_dump (docs/deploy.md)",
            details={"field": "store"},
        )
    from engram.stores.sqlite import SQLiteStore

    return SQLiteStore().path


def backup_sqlite(source: Path, target: Path, pages_per_step: int = 1024) -> dict[str, Any]:
    """Copy ``source`` to ``target`` page by page (writers wait at most one step); the copy is checked.

    Written to a temporary name first, so ``target`` is either absent or complete.
    """
    if not source.exists():
        raise ValidationError(f"no SQLite database at {source}", field="source")
    if target.exists():
        raise ValidationError(f"{target} exists; choose a new file name", field="target")
    partial = target.with_name(target.name + ".partial")
    try:
        src = sqlite3.connect(source, timeout=60)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=pages_per_step)
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            memories = _count(dst)
        finally:
            dst.close()
            src.close()
        if check != "ok":
            raise StoreError(f"the copy of {source} failed its integrity check: {check}")
        os.replace(partial, target)
    except sqlite3.Error as e:
        raise StoreError(f"cannot back up {source}: {e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return {
        "source": str(source),
        "target": str(target),
        "bytes": target.stat().st_size,
        "memories": memories,
    }


def _count(conn: sqlite3.Connection) -> int | None:
    try:
        return int(conn.execute("SELECT COUNT(*) FROM memories WHERE deleted_at IS NULL").fetchone()[0])
    except sqlite3.Error:
        return None  # not a memory store (the server's state, for example)
