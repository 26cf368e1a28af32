"""The few database calls the shared server state and migration runner make, whatever the dialect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Db(Protocol):
    """One connection (of a dialect) seen through a handful of async calls.

    SQL given to it uses ``%s`` placeholders and ``{s}.`` before table names; :meth:`sql` turns that
    into the dialect's text (``?`` and no prefix for SQLite, the schema for PostgreSQL), and also
    replaces ``{now}`` (the database's clock, in epoch seconds), ``{for_update}`` and ``{skip_locked}``
    (row locks, the latter letting concurrent workers pass each other; both nothing where a write
    transaction locks the whole database).
    """

    schema: str  # what migrations are given ("" when the dialect has no schemas)

    def sql(self, text: str) -> str: ...

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    async def rows(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement; its rows (indexable by position, and by name on state connections)."""

    async def many(self, text: str, params: Sequence[Sequence[Any]]) -> None: ...

    async def columns(self, table: str) -> set[str]:
        """The columns of a table of this schema (empty when there is no such table)."""
