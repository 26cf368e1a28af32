"""Read memories straight out of mem0 open source's stores (no mem0 needed): its vector store (local or
remote Qdrant, Chroma, pgvector) and its SQLite history database.

What mem0 2.x keeps per memory, as the vector point's payload: ``data`` (the text), ``hash``,
``created_at``, ``updated_at``, the scope (``user_id``, ``agent_id``, ``run_id``), ``actor_id``,
``role``, ``expiration_date``, mem0-internal keys (``text_lemmatized``, ``attributed_to``) and the
caller's metadata keys beside them. The history database has one row per change
(``id, memory_id, old_memory, new_memory, event, created_at, updated_at, is_deleted, actor_id, role``).
Vectors are not read: they are recomputed with Engram's embedder.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engram.errors import ConfigError, MissingDependencyError, StoreError, ValidationError
from engram.transfer.importer import Incoming
from engram.types import HistoryEntry, MemoryRecord, RestoredMemory, Scope, text_hash

EXTRA = "mem0-import"
SCOPE_KEYS = ("user_id", "agent_id", "app_id", "run_id")
_NOT_METADATA = {"data", "hash", "created_at", "updated_at", "text_lemmatized", "attributed_to", "id",
                 "actor_id", "role", "expiration_date", *SCOPE_KEYS}  # fmt: skip
_UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
_IMPORT_NS = uuid.UUID("6f1d3a52-8c1e-4c59-9d3e-2f6a0b7c4e11")


class Mem0Source(BaseModel):
    """Where a mem0 installation keeps its memories (the parts of mem0's config that say so)."""

    model_config = ConfigDict(extra="ignore")
    provider: str = "qdrant"
    config: dict[str, Any] = Field(default_factory=dict)
    history_db_path: Path | None = None

    @classmethod
    def from_mem0_config(cls, raw: dict[str, Any]) -> Mem0Source:
        """From mem0's ``Memory.from_config`` dict (``vector_store``, ``history_db_path``)."""
        store = raw.get("vector_store") or {}
        if not isinstance(store, dict):
            raise ValidationError("vector_store must be an object", field="vector_store")
        history = raw.get("history_db_path")
        return cls(provider=store.get("provider", "qdrant"), config=store.get("config") or {},
                   history_db_path=Path(history) if history else None)  # fmt: skip

    @property
    def collection(self) -> str:
        return str(self.config.get("collection_name") or "mem0")


# -- vector stores: each yields (id, payload) --------------------------------------------------------
def _qdrant(source: Mem0Source) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        from qdrant_client import QdrantClient
    except ImportError as e:
        raise MissingDependencyError("qdrant-client", EXTRA) from e
    c = source.config
    remote = {k: c[k] for k in ("url", "host", "port", "api_key", "https") if c.get(k) is not None}
    if remote:
        client = QdrantClient(**remote)
    else:
        path = Path(c.get("path") or "/tmp/qdrant")
        if not path.exists():
            raise ConfigError(f"no Qdrant data at {path}", details={"field": "path"})
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as e:  # the local store is locked by a running process (mem0 itself)
            raise ConfigError(f"cannot open the Qdrant store at {path} (stop mem0 first): {e}",
                              details={"field": "path"}) from e  # fmt: skip
    try:
        offset: Any = None
        while True:
            points, offset = client.scroll(source.collection, limit=256, offset=offset, with_payload=True)
            for point in points:
                yield str(point.id), dict(point.payload or {})
            if offset is None:
                return
    except ValueError as e:  # the local client's "collection not found"
        raise ConfigError(f"Qdrant: {e}", details={"field": "collection_name"}) from e
    finally:
        client.close()


def _chroma(source: Mem0Source) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as e:
        raise MissingDependencyError("chromadb", EXTRA) from e
    c = source.config
    if c.get("host"):
        client = chromadb.HttpClient(
            host=c["host"], port=c.get("port") or 8000, settings=Settings(anonymized_telemetry=False)
        )
    else:
        path = Path(c.get("path") or "db")
        if not path.exists():
            raise ConfigError(f"no Chroma data at {path}", details={"field": "path"})
        client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    try:
        collection = client.get_collection(source.collection)
    except Exception as e:  # chromadb raises its own NotFoundError (or ValueError in older versions)
        raise ConfigError(f"Chroma: {e}", details={"field": "collection_name"}) from e
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=256, offset=offset)
        for memory_id, payload in zip(page["ids"], page["metadatas"] or [], strict=False):
            yield str(memory_id), dict(payload or {})
        if len(page["ids"]) < 256:
            return
        offset += 256


def _pgvector(source: Mem0Source) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import psycopg
        from psycopg import sql
    except ImportError as e:
        raise MissingDependencyError("psycopg", "postgres") from e
    c = source.config
    dsn = c.get("connection_string") or psycopg.conninfo.make_conninfo(
        dbname=c.get("dbname") or "postgres", user=c.get("user"), password=c.get("password"),
        host=c.get("host"), port=c.get("port"), sslmode=c.get("sslmode"),
    )  # fmt: skip
    try:
        with psycopg.connect(dsn) as conn, conn.cursor(name="engram_mem0_import") as cur:
            cur.execute(sql.SQL("SELECT id::text, payload FROM {}").format(sql.Identifier(source.collection)))
            for memory_id, payload in cur:
                yield memory_id, dict(payload or {})
    except psycopg.Error as e:
        raise StoreError(f"pgvector: {e}") from e


READERS = {"qdrant": _qdrant, "chroma": _chroma, "pgvector": _pgvector}


# -- history database ---------------------------------------------------------------------------------
def read_history(path: Path | None) -> dict[str, list[dict[str, Any]]]:
    """mem0's history rows by memory id, oldest first (empty without a history database)."""
    if path is None:
        return {}
    if not path.exists():
        raise ConfigError(f"no mem0 history database at {path}", details={"field": "history_db_path"})
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT * FROM history ORDER BY COALESCE(updated_at, created_at), rowid"
        ).fetchall()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read mem0's history database {path}: {e}") from e
    finally:
        conn.close()
    by_memory: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_memory.setdefault(str(row["memory_id"]), []).append(dict(row))
    return by_memory


# -- conversion ---------------------------------------------------------------------------------------
def parse_time(value: Any, fallback: datetime | None = None) -> datetime | None:
    """mem0's ISO timestamps (naive ones are taken as UTC)."""
    if not value:
        return fallback
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return fallback
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _history_entries(memory_id: str, rows: list[dict[str, Any]], created: datetime) -> list[HistoryEntry]:
    entries = [
        HistoryEntry(
            id=str(row.get("id") or uuid.uuid5(_IMPORT_NS, f"{memory_id}:{i}")),
            memory_id=memory_id,
            event=row["event"],
            old_memory=row.get("old_memory"),
            new_memory=row.get("new_memory"),
            created_at=parse_time(row.get("updated_at") or row.get("created_at"), created) or created,
            actor_id=row.get("actor_id"),
            role=row.get("role"),
        )
        for i, row in enumerate(rows)
        if row.get("event") in ("ADD", "UPDATE")
    ]
    return entries


def to_restored(memory_id: str, payload: dict[str, Any], history: list[dict[str, Any]]) -> RestoredMemory:
    """One mem0 memory (its payload and history rows) as Engram restores it."""
    text = payload.get("data")
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"mem0 memory {memory_id} has no text (payload 'data')", field="data")
    first_change = parse_time(history[0].get("created_at")) if history else None
    created = parse_time(payload.get("created_at")) or first_change or _UNKNOWN_TIME  # stable across runs
    updated = parse_time(payload.get("updated_at"))
    expires = payload.get("expiration_date")
    entries = _history_entries(memory_id, history, created)
    if not entries or entries[0].event != "ADD":
        entries.insert(0, HistoryEntry(str(uuid.uuid5(_IMPORT_NS, memory_id)), memory_id, "ADD", None, text,
                                       created, payload.get("actor_id"), payload.get("role")))  # fmt: skip
    entries[0].details = {"imported_from": "mem0", "mem0_hash": payload.get("hash")}
    record = MemoryRecord(
        id=memory_id,
        text=text,
        hash=text_hash(text),
        scope=Scope(*(_scope_value(payload.get(k)) for k in SCOPE_KEYS)),
        actor_id=payload.get("actor_id"),
        role=payload.get("role"),
        metadata={k: _plain(v) for k, v in payload.items() if k not in _NOT_METADATA},
        created_at=created,
        updated_at=updated if updated and updated != created else None,
        observed_at=created,
        expires_at=date.fromisoformat(str(expires)[:10]) if expires else None,
    )
    return RestoredMemory(record, np.zeros(0, dtype=np.float32), entries, [])


def _scope_value(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _plain(value: Any) -> Any:
    """JSON-safe metadata values (Chroma may hand back numpy scalars)."""
    return json.loads(json.dumps(value, default=str))


def read_mem0(source: Mem0Source) -> Iterator[Incoming]:
    """Every memory of a mem0 installation, ready for :func:`engram.transfer.import_memories`."""
    reader = READERS.get(source.provider)
    if reader is None:
        raise ConfigError(
            f"mem0 vector store {source.provider!r} is not supported; use one of {', '.join(READERS)}",
            details={"field": "vector_store.provider"},
        )
    history = read_history(source.history_db_path)
    for memory_id, payload in reader(source):
        if "data" not in payload and "linked_memory_ids" in payload:
            continue  # an entity record of mem0's graph-less entity store
        yield Incoming(to_restored(memory_id, payload, history.get(memory_id, [])))


def load_config(path: Path) -> Mem0Source:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValidationError(f"cannot read the mem0 config {path}: {e}", field="config") from e
    if not isinstance(raw, dict):
        raise ValidationError(f"{path} must hold a JSON object", field="config")
    return Mem0Source.from_mem0_config(raw)
