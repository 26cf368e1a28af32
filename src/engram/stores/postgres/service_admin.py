"""Project deletion in the PostgreSQL server state."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from engram.service import delete_project_statements


class PostgresProjectAdmin:
    """Mixed into :class:`~engram.stores.postgres.service.PostgresServiceState`."""

    _s: str

    def _conn(self) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def delete_project(self, project_id: str) -> bool:
        count = 0
        async with self._conn() as conn, conn.transaction():
            for sql in delete_project_statements(f"{self._s}.", "%s"):
                cur = await conn.execute(sql, (project_id,))
                count = cur.rowcount
        return count > 0
