"""The PostgreSQL dialect of :class:`engram.stores.sql.db.Db` (server state and migrations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_NOW = "extract(epoch FROM clock_timestamp())::float8"  # leases follow the database's clock


class PostgresDb:
    """:class:`engram.stores.sql.db.Db` over an async psycopg connection, tables in ``schema``."""

    def __init__(self, conn: Any, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self._replace = (
            ("{s}.", f"{schema}."), ("{now}", _NOW), ("{for_update}", " FOR UPDATE"),
            ("{skip_locked}", " FOR UPDATE SKIP LOCKED"),
        )  # fmt: skip

    def sql(self, text: str) -> str:
        for generic, concrete in self._replace:
            text = text.replace(generic, concrete)
        return text

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        cur = await self.conn.execute(self.sql(text), params or None)
        return int(cur.rowcount)

    async def rows(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = await self.conn.execute(self.sql(text), params or None)
        return list(await cur.fetchall()) if cur.description else []

    async def many(self, text: str, params: Sequence[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(self.sql(text), params)

    async def columns(self, table: str) -> set[str]:
        rows = await self.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (self.schema, table),
        )
        return {str(r[0] if isinstance(r, tuple) else r["column_name"]) for r in rows}
