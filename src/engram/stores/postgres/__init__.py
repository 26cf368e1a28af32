"""The shared store: PostgreSQL with pgvector, for many servers and workers on many machines."""

from engram.stores.postgres.store import PostgresSettings, PostgresStore

__all__ = ["PostgresSettings", "PostgresStore"]
