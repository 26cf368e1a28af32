"""PostgreSQL's leaves of the filter compiler (:mod:`engram.stores.sql.filters`): jsonb and ``%s``.

A metadata value compares as a number only when it is a JSON number and as a string only when it is
a JSON string (``jsonb_typeof`` guards, inside ``CASE`` so a cast never runs on the wrong type);
strings compare byte-wise (``COLLATE "C"``), like the embedded store.
"""

from __future__ import annotations

import json
from typing import Any

from engram.filters import FilterNode
from engram.stores.sql.filters import FilterCompiler

# The values inside an array at x.v (nothing for anything else).
_ELEMENTS = "jsonb_array_elements(CASE WHEN jsonb_typeof(x.v) = 'array' THEN x.v ELSE '[]'::jsonb END)"


def _value(path: str, params: list[Any]) -> str:
    """The jsonb value at ``path`` (SQL NULL when the key is absent)."""
    params.append(path.split("."))
    return "(m.metadata #> %s::text[])"


def _with_value(path: str, params: list[Any], body: str, body_params: list[Any]) -> str:
    """``body`` evaluated with ``x.v`` bound to the value at ``path`` (the path is bound once)."""
    params.extend(body_params)  # the body's placeholders come first in the text, then the path's
    params.append(path.split("."))
    return f"(SELECT {body} FROM (SELECT m.metadata #> %s::text[] AS v) x)"


class PostgresFilters(FilterCompiler):
    substring_template = "strpos({expr}, %s::text) > 0"
    compare_template = '{col} COLLATE "C" {op} %s::text'  # byte-wise, like the embedded store
    distinct_template = "{col} IS DISTINCT FROM %s::text"
    date_compare_template = "{col} {op} %s::timestamptz"
    date_distinct_template = "{col} IS DISTINCT FROM %s::timestamptz"

    def __init__(self, fold: str = "lower") -> None:
        self.fold_template = fold + "({expr})"

    def column_in(self, col: str, values: list[Any], params: list[Any]) -> str:
        params.append(values)
        return f"{col} = ANY(%s::text[])"

    def metadata_exists(self, path: str, params: list[Any]) -> str:
        return f"COALESCE(jsonb_typeof({_value(path, params)}), 'null') <> 'null'"

    def typed_equals(self, path: str, value: Any, params: list[Any]) -> str:
        if value is None:
            return f"jsonb_typeof({_value(path, params)}) = 'null'"
        if isinstance(value, bool):
            return f"{_value(path, params)} = '{'true' if value else 'false'}'::jsonb"
        v = _value(path, params)
        params.append(json.dumps(value))
        # jsonb equality is type-aware: the number 1 never equals the string "1"; 1 equals 1.0.
        return f"{v} = %s::jsonb"

    def metadata_compare(self, path: str, cmp: str, value: Any, params: list[Any]) -> str:
        if isinstance(value, int | float):
            body = f"jsonb_typeof(x.v) = 'number' AND x.v {cmp} %s::jsonb"
            return _with_value(path, params, body, [json.dumps(value)])
        text = "(x.v #>> '{}') COLLATE \"C\""  # strings compare byte-wise, read only from a string
        body = f"CASE WHEN jsonb_typeof(x.v) = 'string' THEN {text} {cmp} %s::text END"
        return _with_value(path, params, body, [value])

    def metadata_contains(self, path: str, needle: Any, folded: bool, params: list[Any]) -> str:
        if not isinstance(needle, str):
            body = (
                f"EXISTS (SELECT 1 FROM {_ELEMENTS} AS e(value) "
                "WHERE jsonb_typeof(e.value) = 'number' AND e.value = %s::jsonb)"
            )
            return _with_value(path, params, body, [json.dumps(needle)])
        text = self.fold("x.v #>> '{}'") if folded else "x.v #>> '{}'"
        element = self.fold("e.value #>> '{}'") if folded else "e.value #>> '{}'"
        body = (
            f"CASE WHEN jsonb_typeof(x.v) = 'string' THEN strpos({text}, %s::text) > 0 "
            f"ELSE EXISTS (SELECT 1 FROM {_ELEMENTS} AS e(value) WHERE jsonb_typeof(e.value) = 'string' "
            f"AND {element} = %s::text) END"
        )
        return _with_value(path, params, body, [needle, needle])


def compile_filter(node: FilterNode, fold: str = "lower") -> tuple[str, list[Any]]:
    """SQL boolean expression (never NULL) over alias ``m`` and its parameters, in order.

    ``fold`` names the SQL function ``icontains`` folds case with (the store's ``<schema>.fold``,
    which does what Python's ``str.casefold`` does; plain ``lower()`` otherwise).
    """
    return PostgresFilters(fold).compile(node)
