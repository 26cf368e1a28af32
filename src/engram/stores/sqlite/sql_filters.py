"""SQLite's leaves of the filter compiler (:mod:`engram.stores.sql.filters`): JSON1 and ``?`` marks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engram.filters import FilterNode
from engram.stores.sql.filters import FilterCompiler


def iso(moment: datetime) -> str:
    """The fixed-width UTC text form every timestamp is stored in (sorts chronologically)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _json_path(key: str) -> str:
    return "$" + "".join(f'."{part}"' for part in key.split("."))


class SQLiteFilters(FilterCompiler):
    false = "0"
    fold_template = "engram_fold({expr})"  # a Python function registered on every connection
    substring_template = "instr({expr}, ?) > 0"
    compare_template = date_compare_template = "{col} {op} ?"
    distinct_template = date_distinct_template = "{col} IS NOT ?"

    def date_value(self, value: Any) -> Any:
        return iso(value)

    def column_in(self, col: str, values: list[Any], params: list[Any]) -> str:
        params.extend(values)
        return f"{col} IN ({', '.join('?' for _ in values)})"

    def metadata_exists(self, path: str, params: list[Any]) -> str:
        params.append(_json_path(path))
        return "COALESCE(json_type(m.metadata, ?), 'null') != 'null'"

    def typed_equals(self, path: str, value: Any, params: list[Any]) -> str:
        p = _json_path(path)
        if value is None:
            params.append(p)
            return "json_type(m.metadata, ?) = 'null'"
        if isinstance(value, bool):
            params.append(p)
            return f"json_type(m.metadata, ?) = '{'true' if value else 'false'}'"
        params.extend([p, p, value])
        kinds = "IN ('integer', 'real')" if isinstance(value, int | float) else "= 'text'"
        return f"(json_type(m.metadata, ?) {kinds} AND json_extract(m.metadata, ?) = ?)"

    def metadata_compare(self, path: str, cmp: str, value: Any, params: list[Any]) -> str:
        p = _json_path(path)
        kind = "('integer', 'real')" if isinstance(value, int | float) else "('text')"
        params.extend([p, p, value])
        return f"(json_type(m.metadata, ?) IN {kind} AND json_extract(m.metadata, ?) {cmp} ?)"

    def metadata_contains(self, path: str, needle: Any, folded: bool, params: list[Any]) -> str:
        p = _json_path(path)
        elements = "EXISTS (SELECT 1 FROM json_each(m.metadata, ?) j WHERE"
        if not isinstance(needle, str):
            params.extend([p, p, needle])
            number = "j.type IN ('integer', 'real') AND j.value = ?"
            return f"(json_type(m.metadata, ?) = 'array' AND {elements} {number}))"
        text, value = ("engram_fold(json_extract(m.metadata, ?))", "engram_fold(j.value)") if folded else (
            "json_extract(m.metadata, ?)", "j.value")  # fmt: skip
        params.extend([p, p, needle, p, p, needle])
        return (
            f"((json_type(m.metadata, ?) = 'text' AND instr({text}, ?) > 0)"
            f" OR (json_type(m.metadata, ?) = 'array' AND {elements} j.type = 'text' AND {value} = ?)))"
        )


_COMPILER = SQLiteFilters()


def compile_filter(node: FilterNode) -> tuple[str, list[Any]]:
    """SQL boolean expression (always 0 or 1, never NULL) over alias ``m`` and its parameters."""
    return _COMPILER.compile(node)
