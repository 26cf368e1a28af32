"""Engram's export format: JSON Lines, one header line, then one line per memory.

Header: ``{"format": "engram-export", "version": 1, "exported_at", "namespace", "filters", "embedder",
"with_vectors"}``. A memory line holds the memory as ``get`` shows it (id, text, hash, scope, actor,
role, metadata, dates, expiry, supersession link), its ``history`` and its ``sources`` (the raw
messages it came from), and ``vector`` when exported ``--with-vectors``. Lines are written with a
fixed key order, so exporting what was imported gives the same bytes (the header aside).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from engram.errors import ValidationError
from engram.types import (
    SCOPE_FIELDS,
    HistoryEntry,
    MemoryRecord,
    RestoredMemory,
    Scope,
    StoredMessage,
    Vector,
    utcnow,
)

FORMAT = "engram-export"
VERSION = 1
_EVENTS = ("ADD", "UPDATE", "DELETE", "SUPERSEDE")
_VECTOR_KEY = ',"vector":['
_NOT_NUMBERS = str.maketrans("", "", "0123456789.,-+eE")  # deletes what a list of JSON numbers holds


def dumps(obj: dict[str, Any]) -> str:
    """One JSON line (no trailing newline), UTF-8 as is."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def header(namespace: str, filters: Any, embedder: dict[str, Any], with_vectors: bool) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": utcnow().isoformat(),
        "namespace": namespace,
        "filters": filters,
        "embedder": embedder,
        "with_vectors": with_vectors,
    }


def check_header(line: dict[str, Any]) -> dict[str, Any]:
    if line.get("format") != FORMAT:
        raise ValidationError(f"not an Engram export: the first line's format is {line.get('format')!r}",
                              field="format")  # fmt: skip
    if line.get("version") != VERSION:
        raise ValidationError(f"export version {line.get('version')!r} is not supported (this Engram reads "
                              f"version {VERSION})", field="version")  # fmt: skip
    return line


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_dict(m: StoredMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "role": m.role,
        "name": m.name,
        "content": m.content,
        **m.scope.as_dict(),
        "observed_at": m.observed_at.isoformat(),
        "created_at": m.created_at.isoformat(),
    }


def history_dict(h: HistoryEntry) -> dict[str, Any]:
    return {
        "id": h.id,
        "event": h.event,
        "old_memory": h.old_memory,
        "new_memory": h.new_memory,
        "created_at": h.created_at.isoformat(),
        "actor_id": h.actor_id,
        "role": h.role,
        "details": h.details,
    }


def memory_dict(
    record: MemoryRecord, history: list[HistoryEntry], messages: list[StoredMessage], vector: Vector | None
) -> dict[str, Any]:
    """One memory line."""
    line: dict[str, Any] = {
        "id": record.id,
        "memory": record.text,
        "hash": record.hash,
        **record.scope.as_dict(),
        "actor_id": record.actor_id,
        "role": record.role,
        "metadata": record.metadata,
        "created_at": record.created_at.isoformat(),
        "updated_at": _iso(record.updated_at),
        "observed_at": record.observed_at.isoformat(),
        "expiration_date": _iso(record.expires_at),
        "superseded_by": record.superseded_by,
        "valid_until": _iso(record.valid_until),
        "history": [history_dict(h) for h in history],
        "sources": [message_dict(m) for m in messages],
    }
    if vector is not None:
        line["vector"] = [float(x) for x in vector]
    return line


# -- reading ----------------------------------------------------------------------------------------
def loads(text: str, *, vector: bool = True) -> Any:
    """One line's JSON. A vector ending the line, as :func:`memory_dict` writes it, is split off and
    parsed apart (decoding 384 numbers as JSON costs several times the rest of the line), or with
    ``vector=False`` dropped unparsed. Raises ``ValueError`` (``json.JSONDecodeError`` included)."""
    line = text.rstrip()
    start = line.rfind(_VECTOR_KEY)
    numbers = line[start + len(_VECTOR_KEY) : -2] if start > 0 and line.endswith("]}") else None
    if numbers is None or numbers.translate(_NOT_NUMBERS):  # not that shape: the JSON decoder decides
        obj = json.loads(text)
        if not vector and isinstance(obj, dict):
            obj.pop("vector", None)
        return obj
    obj = json.loads(line[:start] + "}")
    if vector and isinstance(obj, dict):  # float() reads each number exactly as the JSON decoder does
        obj["vector"] = np.fromiter(map(float, numbers.split(",")), np.float64) if numbers else []
    return obj


def _field(obj: dict[str, Any], name: str, where: str, *, required: bool = False) -> Any:
    value = obj.get(name)
    if required and value in (None, ""):
        raise ValidationError(f"{where}.{name} is missing", field=name)
    if value is not None and name not in ("metadata", "details", "vector") and not isinstance(value, str):
        raise ValidationError(f"{where}.{name} must be a string", field=name)
    return value


def _dt(obj: dict[str, Any], name: str, where: str, *, required: bool = False) -> datetime | None:
    value = _field(obj, name, where, required=required)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise ValidationError(f"{where}.{name} is not an ISO date-time: {value!r}", field=name) from e
    if parsed.tzinfo is None:
        raise ValidationError(f"{where}.{name} needs a time zone: {value!r}", field=name)
    return parsed.astimezone(UTC)


def _scope(obj: dict[str, Any], where: str) -> Scope:
    return Scope(*(_field(obj, f, where) for f in SCOPE_FIELDS))


def _object(obj: Any, where: str, field: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValidationError(f"{where} must be an object", field=field)
    return obj


def _message(obj: Any, where: str) -> StoredMessage:
    obj = _object(obj, where, "sources")
    return StoredMessage(
        id=_field(obj, "id", where, required=True),
        scope=_scope(obj, where),
        role=_field(obj, "role", where, required=True),
        content=_field(obj, "content", where) or "",
        name=_field(obj, "name", where),
        observed_at=_dt(obj, "observed_at", where, required=True),  # type: ignore[arg-type]
        created_at=_dt(obj, "created_at", where, required=True),  # type: ignore[arg-type]
    )


def _history(obj: Any, memory_id: str, where: str) -> HistoryEntry:
    obj = _object(obj, where, "history")
    event = _field(obj, "event", where, required=True)
    if event not in _EVENTS:
        raise ValidationError(f"{where}.event must be one of {', '.join(_EVENTS)}", field="event")
    details = obj.get("details") or {}
    if not isinstance(details, dict):
        raise ValidationError(f"{where}.details must be an object", field="details")
    return HistoryEntry(
        id=_field(obj, "id", where, required=True),
        memory_id=memory_id,
        event=event,
        old_memory=_field(obj, "old_memory", where),
        new_memory=_field(obj, "new_memory", where),
        created_at=_dt(obj, "created_at", where, required=True),  # type: ignore[arg-type]
        actor_id=_field(obj, "actor_id", where),
        role=_field(obj, "role", where),
        details=details,
    )


def parse_memory(obj: Any, line_no: int) -> tuple[RestoredMemory, bool]:
    """A memory line back into what :meth:`Store.restore` writes; the bool says a vector came with it
    (otherwise the vector is empty and must be computed)."""
    where = f"line {line_no}"
    obj = _object(obj, where, "line")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValidationError(f"{where}.metadata must be an object", field="metadata")
    expires = _field(obj, "expiration_date", where)
    try:
        expires_at = date.fromisoformat(expires) if expires else None
    except ValueError as e:
        raise ValidationError(
            f"{where}.expiration_date is not a date: {expires!r}", field="expiration_date"
        ) from e
    memory_id = _field(obj, "id", where, required=True)
    record = MemoryRecord(
        id=memory_id,
        text=_field(obj, "memory", where, required=True),
        hash=_field(obj, "hash", where, required=True),
        scope=_scope(obj, where),
        actor_id=_field(obj, "actor_id", where),
        role=_field(obj, "role", where),
        metadata=metadata,
        created_at=_dt(obj, "created_at", where, required=True),  # type: ignore[arg-type]
        updated_at=_dt(obj, "updated_at", where),
        observed_at=_dt(obj, "observed_at", where, required=True),  # type: ignore[arg-type]
        expires_at=expires_at,
        superseded_by=_field(obj, "superseded_by", where),
        valid_until=_dt(obj, "valid_until", where),
    )
    history = [
        _history(h, memory_id, f"{where}.history[{i}]") for i, h in enumerate(obj.get("history") or [])
    ]
    messages = [_message(m, f"{where}.sources[{i}]") for i, m in enumerate(obj.get("sources") or [])]
    record.source_message_ids = [m.id for m in messages]
    raw_vector = obj.get("vector")
    vector = np.asarray(raw_vector if raw_vector is not None else [], dtype=np.float32)
    return RestoredMemory(record, vector, history, messages), raw_vector is not None
