"""Compile a parsed filter tree (:mod:`engram.filters`) to PostgreSQL with bound parameters only.

Semantics match the embedded store: a metadata value compares as a number only when it is a JSON
number and as a string only when it is a JSON string (``jsonb_typeof`` guards, inside ``CASE`` so a
cast never runs on the wrong type); ``ne``/``nin`` also match memories without the key; strings
compare byte-wise (``COLLATE "C"``); every condition is ``true`` or ``false``, never NULL, so ``NOT``
is plain negation.
"""

from __future__ import annotations

import json
from typing import Any

from engram.filters import And, Cond, FilterNode, Not, Or

_COLUMNS = {"id", "user_id", "agent_id", "app_id", "run_id", "actor_id", "role"}  # id: entity filter
_DATE_COLUMNS = {
    "created_at": "m.created_at",
    "observed_at": "m.observed_at",
    "updated_at": "COALESCE(m.updated_at, m.created_at)",
}
_CMP = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def compile_filter(node: FilterNode, fold: str = "lower") -> tuple[str, list[Any]]:
    """SQL boolean expression (never NULL) over alias ``m`` and its parameters, in order.

    ``fold`` names the SQL function ``icontains`` folds case with (the store's ``<schema>.fold``,
    which does what Python's ``str.casefold`` does; plain ``lower()`` otherwise).
    """
    params: list[Any] = []
    return _node(node, params, fold), params


def _node(node: FilterNode, params: list[Any], fold: str) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_node(c, params, fold) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_node(c, params, fold) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"(NOT {_node(node.child, params, fold)})"
    return f"COALESCE(({_cond(node, params, fold)}), false)"


def _cond(c: Cond, params: list[Any], fold: str) -> str:
    if c.field.kind == "column":
        return _column_cond(f"m.{_checked_column(c.field.name)}", c, params, fold)
    if c.field.kind == "date":
        col = _DATE_COLUMNS[c.field.name]
        if c.op == "exists":
            return f"{col} IS NOT NULL"
        params.append(c.value)
        if c.op == "ne":
            return f"{col} IS DISTINCT FROM %s::timestamptz"
        return f"{col} {_CMP[c.op]} %s::timestamptz"
    return _metadata_cond(c, params, fold)


def _checked_column(name: str) -> str:
    if name not in _COLUMNS:  # the parser already guarantees this; never interpolate anything else
        raise ValueError(f"not a filterable column: {name}")
    return name


def _column_cond(col: str, c: Cond, params: list[Any], fold: str) -> str:
    op = c.op
    if op == "exists":
        return f"{col} IS NOT NULL"
    if op == "ne":
        params.append(c.value)
        return f"{col} IS DISTINCT FROM %s::text"
    if op in ("in", "nin"):
        params.append(list(c.value))
        inside = f"{col} = ANY(%s::text[])"
        return inside if op == "in" else f"NOT COALESCE({inside}, false)"
    if op == "contains":
        params.append(str(c.value))
        return f"strpos({col}, %s::text) > 0"
    if op == "icontains":
        params.append(str(c.value).casefold())
        return f"strpos({fold}({col}), %s::text) > 0"
    params.append(c.value)
    return f'{col} COLLATE "C" {_CMP[op]} %s::text'


def _value(path: list[str], params: list[Any]) -> str:
    """The jsonb value at ``path`` (SQL NULL when the key is absent)."""
    params.append(path)
    return "(m.metadata #> %s::text[])"


def _with_value(path: list[str], params: list[Any], body: str, body_params: list[Any]) -> str:
    """``body`` evaluated with ``x.v`` bound to the value at ``path`` (the path is bound once)."""
    params.extend(body_params)  # the body's placeholders come first in the text, then the path's
    params.append(path)
    return f"(SELECT {body} FROM (SELECT m.metadata #> %s::text[] AS v) x)"


def _typed_equals(path: list[str], value: Any, params: list[Any]) -> str:
    """True when the metadata value at ``path`` equals ``value`` with the same JSON type."""
    if value is None:
        return f"jsonb_typeof({_value(path, params)}) = 'null'"
    if isinstance(value, bool):
        return f"{_value(path, params)} = '{'true' if value else 'false'}'::jsonb"
    v = _value(path, params)
    params.append(json.dumps(value))
    # jsonb equality is type-aware: the number 1 never equals the string "1"; 1 equals 1.0.
    return f"{v} = %s::jsonb"


# The values inside an array at x.v (nothing for anything else).
_ELEMENTS = "jsonb_array_elements(CASE WHEN jsonb_typeof(x.v) = 'array' THEN x.v ELSE '[]'::jsonb END)"


def _metadata_cond(c: Cond, params: list[Any], fold: str) -> str:
    path = c.field.metadata_path()
    op = c.op
    if op == "exists":  # present and not JSON null
        return f"COALESCE(jsonb_typeof({_value(path, params)}), 'null') <> 'null'"
    if op in ("eq", "ne"):
        inner = _typed_equals(path, c.value, params)
        return inner if op == "eq" else f"NOT COALESCE({inner}, false)"
    if op in ("in", "nin"):
        inner = "(" + " OR ".join(f"COALESCE({_typed_equals(path, v, params)}, false)" for v in c.value) + ")"
        return inner if op == "in" else f"NOT {inner}"
    if op in _CMP:
        if isinstance(c.value, int | float):
            body = f"jsonb_typeof(x.v) = 'number' AND x.v {_CMP[op]} %s::jsonb"
            return _with_value(path, params, body, [json.dumps(c.value)])
        # strings compare byte-wise, like the embedded store; the text is read only from a string
        body = (
            "CASE WHEN jsonb_typeof(x.v) = 'string' "
            f"THEN (x.v #>> '{{}}') COLLATE \"C\" {_CMP[op]} %s::text END"
        )
        return _with_value(path, params, body, [c.value])
    # contains: substring of a string value, or an element of an array value.
    # icontains: the same ignoring case (an array element must equal the needle ignoring case).
    if op == "icontains":
        needle = str(c.value).casefold()
        body = (
            f"CASE WHEN jsonb_typeof(x.v) = 'string' THEN strpos({fold}(x.v #>> '{{}}'), %s::text) > 0 "
            f"ELSE EXISTS (SELECT 1 FROM {_ELEMENTS} AS e(value) WHERE jsonb_typeof(e.value) = 'string' "
            f"AND {fold}(e.value #>> '{{}}') = %s::text) END"
        )
        return _with_value(path, params, body, [needle, needle])
    if isinstance(c.value, str):
        body = (
            "CASE WHEN jsonb_typeof(x.v) = 'string' THEN strpos(x.v #>> '{}', %s::text) > 0 "
            f"ELSE EXISTS (SELECT 1 FROM {_ELEMENTS} AS e(value) WHERE jsonb_typeof(e.value) = 'string' "
            "AND e.value #>> '{}' = %s::text) END"
        )
        return _with_value(path, params, body, [c.value, c.value])
    body = (
        f"EXISTS (SELECT 1 FROM {_ELEMENTS} AS e(value) "
        "WHERE jsonb_typeof(e.value) = 'number' AND e.value = %s::jsonb)"
    )
    return _with_value(path, params, body, [json.dumps(c.value)])
