"""Settings and row conversion of the PostgreSQL store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from pydantic import Field, SecretStr

from engram.interfaces import BackendSettings
from engram.stores.postgres.schema import SCHEMA_NAME_RE
from engram.stores.sql.rows import RowReader, content_digest, memory_columns
from engram.types import HistoryEntry, MemoryRecord, StoredMessage, Vector

MEMORY_COLUMNS = memory_columns("metadata_text")  # exactly as given (jsonb normalises numbers)


class PostgresConnectionSettings(BackendSettings):
    """How a PostgreSQL part of Engram connects (the store's and the server state's settings)."""

    url: SecretStr | None = Field(
        None, description="postgresql://user:password@host:5432/db; default $ENGRAM_DATABASE_URL"
    )
    schema_name: str = Field(
        "engram", pattern=SCHEMA_NAME_RE.pattern, description="schema holding Engram's tables"
    )
    min_pool_size: int = Field(1, ge=0, description="connections kept open per process")
    max_pool_size: int = Field(10, ge=1, description="connections at most per process")
    pool_timeout: float = Field(30.0, gt=0, description="seconds to wait for a free connection")
    prepared_statements: bool = Field(
        True,
        description="prepare frequent statements on the server; off behind PgBouncer in transaction mode",
    )


class PostgresSettings(PostgresConnectionSettings):
    """Settings of the PostgreSQL store."""

    read_url: SecretStr | None = Field(
        None,
        description="a streaming replica for searches and listings; default $ENGRAM_DATABASE_READ_URL",
    )
    read_your_writes_seconds: float = Field(
        5.0,
        ge=0,
        description="after writing to a namespace, this process reads it from the primary this long",
    )
    hnsw: bool = Field(True, description="keep an HNSW index for scopes too large to scan exactly")
    exact_search_max_rows: int = Field(
        10_000, ge=0, description="scopes up to this many rows are searched exactly (no index)"
    )
    hnsw_ef_search: int = Field(200, ge=1, le=1000, description="HNSW candidate list size at query time")
    stats_cache_min_rows: int = Field(
        10_000,
        ge=0,
        description="scopes this large reuse their BM25 statistics for stats_cache_seconds; "
        "smaller ones are keyword-searched in one statement from their own rows",
    )
    stats_cache_seconds: float = Field(60.0, ge=0)


def as_array(value: Any) -> Vector:
    """A float32 numpy vector from what the pgvector loader returns (a ``Vector`` or an array)."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _day(value: date | None) -> date | None:
    return value


ROWS = RowReader(utc, _day, lambda text: dict(json.loads(text)))
record = ROWS.memory
message = ROWS.message


# -- rows written (INSERT parameters and COPY rows alike) ----------------------------------------------
MEMORY_WRITE_COLUMNS = (
    "id, namespace, user_id, agent_id, app_id, run_id, scope_key, text, hash, actor_id, role, metadata, "
    "metadata_text, created_at, updated_at, observed_at, expires_at, superseded_by, valid_until, embedding, "
    "tsv, doc_len"
)
MESSAGE_WRITE_COLUMNS = (
    "id, namespace, user_id, agent_id, app_id, run_id, scope_key, role, name, content, content_hash, "
    "observed_at, created_at"
)
HISTORY_WRITE_COLUMNS = (
    "id, namespace, memory_id, event, old_memory, new_memory, created_at, actor_id, role, details"
)


def _as_given(text: str) -> Any:
    return text


def memory_row(
    namespace: str, rec: MemoryRecord, vector: Vector, tsv: Any, doc_len: int, jsonb: Any = _as_given
) -> tuple[Any, ...]:
    """The memory's values in :data:`MEMORY_WRITE_COLUMNS` order (``jsonb`` wraps the metadata text
    for its ``jsonb`` column; ``tsv``: the keyword document, as the statement expects it)."""
    metadata = json.dumps(rec.metadata)
    return (
        rec.id, namespace, *rec.scope.as_tuple(), rec.scope.key(), rec.text, rec.hash, rec.actor_id,
        rec.role, jsonb(metadata), metadata, rec.created_at, rec.updated_at, rec.observed_at, rec.expires_at,
        rec.superseded_by, rec.valid_until, np.asarray(vector, dtype=np.float32), tsv, doc_len,
    )  # fmt: skip


def message_row(namespace: str, m: StoredMessage) -> tuple[Any, ...]:
    """The message's values in :data:`MESSAGE_WRITE_COLUMNS` order."""
    return (
        m.id, namespace, *m.scope.as_tuple(), m.scope.key(), m.role, m.name, m.content,
        content_digest(m.content), m.observed_at, m.created_at,
    )  # fmt: skip


def history_row(namespace: str, e: HistoryEntry, jsonb: Any = _as_given) -> tuple[Any, ...]:
    """The history entry's values in :data:`HISTORY_WRITE_COLUMNS` order."""
    return (
        e.id, namespace, e.memory_id, e.event, e.old_memory, e.new_memory, e.created_at, e.actor_id, e.role,
        jsonb(json.dumps(e.details)),
    )  # fmt: skip
