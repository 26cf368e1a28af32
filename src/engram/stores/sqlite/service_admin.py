"""Project deletion in the SQLite server state."""

from __future__ import annotations

import sqlite3

from engram.service import delete_project_statements
from engram.stores.sqlite.service_connection import SQLiteStateConnection


class SQLiteProjectAdmin(SQLiteStateConnection):
    """Mixed into :class:`SQLiteServiceState`."""

    async def delete_project(self, project_id: str) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            def run() -> bool:
                count = 0
                for sql in delete_project_statements("", "?"):
                    count = conn.execute(sql, (project_id,)).rowcount
                return count > 0

            return self._tx(conn, run)

        return await self._run(go)
