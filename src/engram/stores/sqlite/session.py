"""The SQLite store's session: its reads, candidate generators and writes on one connection."""

from __future__ import annotations

from engram.stores.sqlite.candidates import SQLiteCandidates
from engram.stores.sqlite.reads import generation
from engram.stores.sqlite.writes import SQLiteWrites

__all__ = ["SQLiteSession", "generation"]


class SQLiteSession(SQLiteWrites, SQLiteCandidates):
    """Implements :class:`engram.stores.sql.dialect.Session` over a ``sqlite3`` connection."""
