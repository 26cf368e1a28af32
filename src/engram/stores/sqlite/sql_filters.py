"""Compile a parsed filter tree (:mod:`engram.filters`) to SQLite SQL with bound parameters only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engram.filters import And, Cond, FilterNode, Not, Or

_COLUMNS = {"id", "user_id", "agent_id", "app_id", "run_id", "actor_id", "role"}  # id: entity filter
_DATE_COLUMNS = {
    "created_at": "m.created_at",
    "observed_at": "m.observed_at",
    "updated_at": "COALESCE(m.updated_at, m.created_at)",
}
_CMP = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def iso(moment: datetime) -> str:
    """The fixed-width UTC text form every timestamp is stored in (sorts chronologically)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def compile_filter(node: FilterNode) -> tuple[str, list[Any]]:
    """SQL boolean expression (always 0 or 1, never NULL) over alias ``m`` and its parameters."""
    params: list[Any] = []
    return _node(node, params), params


def _node(node: FilterNode, params: list[Any]) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_node(c, params) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_node(c, params) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"(NOT {_node(node.child, params)})"
    return f"COALESCE(({_cond(node, params)}), 0)"


def _cond(c: Cond, params: list[Any]) -> str:
    if c.field.kind == "column":
        return _column_cond(f"m.{_checked_column(c.field.name)}", c, params)
    if c.field.kind == "date":
        col = _DATE_COLUMNS[c.field.name]
        if c.op == "exists":
            return f"{col} IS NOT NULL"
        params.append(iso(c.value))
        return f"{col} {_CMP.get(c.op, '!=')} ?" if c.op != "ne" else f"{col} IS NOT ?"
    return _metadata_cond(c, params)


def _checked_column(name: str) -> str:
    if name not in _COLUMNS:  # the parser already guarantees this; never interpolate anything else
        raise ValueError(f"not a filterable column: {name}")
    return name


def _column_cond(col: str, c: Cond, params: list[Any]) -> str:
    op = c.op
    if op == "exists":
        return f"{col} IS NOT NULL"
    if op == "ne":
        params.append(c.value)
        return f"{col} IS NOT ?"
    if op in ("in", "nin"):
        params.extend(c.value)
        marks = ", ".join("?" for _ in c.value)
        inside = f"{col} IN ({marks})"
        return inside if op == "in" else f"NOT COALESCE({inside}, 0)"
    if op == "contains":
        params.append(str(c.value))
        return f"instr({col}, ?) > 0"
    if op == "icontains":
        params.append(str(c.value).casefold())
        return f"instr(engram_fold({col}), ?) > 0"
    params.append(c.value)
    return f"{col} {_CMP[op]} ?"


def _json_path(key: str) -> str:
    return "$" + "".join(f'."{part}"' for part in key.split("."))


def _typed_equals(path: str, value: Any, params: list[Any]) -> str:
    """True when the metadata value at ``path`` equals ``value`` with the same JSON type."""
    if value is None:
        params.append(path)
        return "json_type(m.metadata, ?) = 'null'"
    if isinstance(value, bool):
        params.append(path)
        return f"json_type(m.metadata, ?) = '{'true' if value else 'false'}'"
    if isinstance(value, int | float):
        params.extend([path, path, value])
        return "(json_type(m.metadata, ?) IN ('integer', 'real') AND json_extract(m.metadata, ?) = ?)"
    params.extend([path, path, value])
    return "(json_type(m.metadata, ?) = 'text' AND json_extract(m.metadata, ?) = ?)"


def _metadata_cond(c: Cond, params: list[Any]) -> str:
    path = _json_path(c.field.name)
    op = c.op
    if op == "exists":
        params.append(path)
        return "COALESCE(json_type(m.metadata, ?), 'null') != 'null'"
    if op in ("eq", "ne"):
        inner = _typed_equals(path, c.value, params)
        return inner if op == "eq" else f"NOT COALESCE({inner}, 0)"
    if op in ("in", "nin"):
        inner = "(" + " OR ".join(f"COALESCE({_typed_equals(path, v, params)}, 0)" for v in c.value) + ")"
        return inner if op == "in" else f"NOT {inner}"
    if op in _CMP:
        kind = "('integer', 'real')" if isinstance(c.value, int | float) else "('text')"
        params.extend([path, path, c.value])
        return f"(json_type(m.metadata, ?) IN {kind} AND json_extract(m.metadata, ?) {_CMP[op]} ?)"
    # contains / icontains: substring of a string value, or an element of an array value
    if op == "icontains":
        needle = str(c.value).casefold()
        params.extend([path, path, needle, path, path, needle])
        return (
            "((json_type(m.metadata, ?) = 'text' AND instr(engram_fold(json_extract(m.metadata, ?)), ?) > 0)"
            " OR (json_type(m.metadata, ?) = 'array' AND EXISTS (SELECT 1 FROM json_each(m.metadata, ?) j"
            " WHERE j.type = 'text' AND engram_fold(j.value) = ?)))"
        )
    if isinstance(c.value, str):
        params.extend([path, path, c.value, path, path, c.value])
        return (
            "((json_type(m.metadata, ?) = 'text' AND instr(json_extract(m.metadata, ?), ?) > 0)"
            " OR (json_type(m.metadata, ?) = 'array' AND EXISTS (SELECT 1 FROM json_each(m.metadata, ?) j"
            " WHERE j.type = 'text' AND j.value = ?)))"
        )
    params.extend([path, path, c.value])
    return (
        "(json_type(m.metadata, ?) = 'array' AND EXISTS (SELECT 1 FROM json_each(m.metadata, ?) j"
        " WHERE j.type IN ('integer', 'real') AND j.value = ?))"
    )
