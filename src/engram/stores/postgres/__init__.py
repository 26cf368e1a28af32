"""The shared store: PostgreSQL with pgvector, for many servers and workers on many machines."""

from engram.stores.postgres.rows import PostgresSettings
from engram.stores.postgres.store import PostgresStore

__all__ = ["PostgresSettings", "PostgresStore"]
