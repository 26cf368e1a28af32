"""The embedded default: one SQLite file (WAL) holding memories, vectors, FTS5 index, history, messages."""

from engram.stores.sqlite.store import SQLiteSettings, SQLiteStore

__all__ = ["SQLiteSettings", "SQLiteStore"]
