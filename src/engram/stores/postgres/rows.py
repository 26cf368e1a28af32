"""Settings and row conversion of the PostgreSQL store."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from pydantic import Field, SecretStr

from engram.interfaces import BackendSettings
from engram.stores.postgres.schema import SCHEMA_NAME_RE
from engram.types import MemoryRecord, Scope, StoredMessage, Vector

MEMORY_COLUMNS = (
    "m.id, m.text, m.hash, m.user_id, m.agent_id, m.app_id, m.run_id, m.actor_id, m.role, m.metadata_text, "
    "m.created_at, m.updated_at, m.observed_at, m.expires_at, m.superseded_by, m.valid_until"
)
MESSAGE_COLUMNS = "id, user_id, agent_id, app_id, run_id, role, name, content, observed_at, created_at"


class PostgresSettings(BackendSettings):
    """Settings of the PostgreSQL store."""

    url: SecretStr | None = Field(
        None, description="postgresql://user:password@host:5432/db; default $ENGRAM_DATABASE_URL"
    )
    read_url: SecretStr | None = Field(
        None,
        description="a streaming replica for searches and listings; default $ENGRAM_DATABASE_READ_URL",
    )
    read_your_writes_seconds: float = Field(
        5.0,
        ge=0,
        description="after writing to a namespace, this process reads it from the primary this long",
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


def digest(content: str) -> str:
    """Exact-content key of a message (sha256), indexed for provenance look-ups."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def as_array(value: Any) -> Vector:
    """A float32 numpy vector from what the pgvector loader returns (a ``Vector`` or an array)."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _opt_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def record(row: tuple[Any, ...]) -> MemoryRecord:
    expires: date | None = row[13]
    return MemoryRecord(
        id=row[0],
        text=row[1],
        hash=row[2],
        scope=Scope(row[3], row[4], row[5], row[6]),
        actor_id=row[7],
        role=row[8],
        metadata=dict(json.loads(row[9])),
        created_at=utc(row[10]),
        updated_at=_opt_utc(row[11]),
        observed_at=utc(row[12]),
        expires_at=expires,
        superseded_by=row[14],
        valid_until=_opt_utc(row[15]),
    )


def message(row: tuple[Any, ...]) -> StoredMessage:
    return StoredMessage(
        id=row[0],
        scope=Scope(row[1], row[2], row[3], row[4]),
        role=row[5],
        name=row[6],
        content=row[7],
        observed_at=utc(row[8]),
        created_at=utc(row[9]),
    )
