"""The SQLite dialect of :class:`engram.stores.sql.db.Db` (server state and migrations)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=512)
def _dialect_sql(text: str) -> str:
    for generic, sqlite in (("{s}.", ""), ("%s", "?"), ("{now}", "engram_now()"), ("{for_update}", ""),
                            ("{skip_locked}", "")):  # fmt: skip
        text = text.replace(generic, sqlite)
    return text


class SQLiteDb:
    """:class:`engram.stores.sql.db.Db` over a ``sqlite3`` connection (blocking inside ``async def``:
    run it with :func:`engram.stores.sql.dialect.run_inline` in a worker thread)."""

    schema = ""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def sql(self, text: str) -> str:
        return _dialect_sql(text)

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(self.sql(text), params).rowcount

    async def rows(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.conn.execute(self.sql(text), params).fetchall()

    async def many(self, text: str, params: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(self.sql(text), params)

    async def columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self.conn.execute(f"PRAGMA table_info({table})")}
