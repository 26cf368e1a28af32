"""The PostgreSQL store's session: its reads, candidate generators and writes on one connection."""

from __future__ import annotations

from engram.stores.postgres.candidates import PostgresCandidates
from engram.stores.postgres.writes import PostgresWrites


class PostgresSession(PostgresWrites, PostgresCandidates):
    """Implements :class:`engram.stores.sql.dialect.Session` over an async psycopg connection."""
