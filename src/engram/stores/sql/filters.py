"""The filter compiler's tree walk, column tables and checks, shared by every SQL dialect.

A dialect subclasses :class:`FilterCompiler` and writes only the leaves: how a column, a date or a
metadata value is compared in its SQL. The walk, which fields exist, how ``ne``/``nin`` treat missing
values (they match) and the rule that no condition is ever NULL (so ``NOT`` is plain negation) live here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from engram.filters import COLUMN_FIELDS, And, Cond, FilterNode, Not, Or

DATE_COLUMNS = {
    "created_at": "m.created_at",
    "observed_at": "m.observed_at",
    "updated_at": "COALESCE(m.updated_at, m.created_at)",
}
CMP = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
INTERNAL_COLUMNS = frozenset({"id"})  # never parsed from a user's filter; the entity filter uses it


def checked_column(name: str) -> str:
    """``m.<name>`` for a filterable column; anything else is refused (never interpolated)."""
    if name not in COLUMN_FIELDS and name not in INTERNAL_COLUMNS:  # the parser guarantees this
        raise ValueError(f"not a filterable column: {name}")
    return f"m.{name}"


class FilterCompiler(ABC):
    """Compile a parsed filter tree to one SQL boolean over alias ``m``, with bound parameters only."""

    # The simple leaves, as the dialect's SQL templates ({col}, {expr}, {op}: filled in here).
    false = "false"  # the false literal (conditions are COALESCEd to it)
    fold_template = "lower({expr})"  # case folding, the way Python's str.casefold does
    substring_template = "strpos({expr}, %s) > 0"  # the text at {expr} holds the bound needle
    compare_template = "{col} {op} %s"  # a text column against a bound value, byte-wise
    distinct_template = "{col} IS DISTINCT FROM %s"  # ...and ``ne`` (NULL counts as different)
    date_compare_template = "{col} {op} %s"  # a date column against a bound timestamp
    date_distinct_template = "{col} IS DISTINCT FROM %s"

    def compile(self, node: FilterNode) -> tuple[str, list[Any]]:
        """SQL boolean expression (never NULL) and its parameters, in order."""
        params: list[Any] = []
        return self._node(node, params), params

    def _node(self, node: FilterNode, params: list[Any]) -> str:
        if isinstance(node, And):
            return "(" + " AND ".join(self._node(c, params) for c in node.children) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self._node(c, params) for c in node.children) + ")"
        if isinstance(node, Not):
            return f"(NOT {self._node(node.child, params)})"
        return f"COALESCE(({self._cond(node, params)}), {self.false})"

    def _cond(self, c: Cond, params: list[Any]) -> str:
        if c.field.kind == "column":
            return self._column(checked_column(c.field.name), c, params)
        if c.field.kind == "date":
            col = DATE_COLUMNS[c.field.name]
            if c.op == "exists":
                return f"{col} IS NOT NULL"
            params.append(self.date_value(c.value))
            if c.op == "ne":
                return self.date_distinct_template.format(col=col)
            return self.date_compare_template.format(col=col, op=CMP[c.op])
        return self._metadata(c, params)

    def _column(self, col: str, c: Cond, params: list[Any]) -> str:
        op = c.op
        if op == "exists":
            return f"{col} IS NOT NULL"
        if op in ("in", "nin"):
            inside = self.column_in(col, list(c.value), params)
            return inside if op == "in" else f"NOT COALESCE({inside}, {self.false})"
        if op in ("contains", "icontains"):
            folded = op == "icontains"
            params.append(str(c.value).casefold() if folded else str(c.value))
            return self.substring_template.format(expr=self.fold(col) if folded else col)
        params.append(c.value)
        if op == "ne":
            return self.distinct_template.format(col=col)
        return self.compare_template.format(col=col, op=CMP[op])

    def fold(self, expr: str) -> str:
        return self.fold_template.format(expr=expr)

    def date_value(self, value: Any) -> Any:
        """How a datetime is bound (as it is, unless the dialect stores it otherwise)."""
        return value

    def _metadata(self, c: Cond, params: list[Any]) -> str:
        path = c.field.name
        op = c.op
        if op == "exists":  # present and not JSON null
            return self.metadata_exists(path, params)
        if op in ("eq", "ne"):
            inner = self.typed_equals(path, c.value, params)
            return inner if op == "eq" else f"NOT COALESCE({inner}, {self.false})"
        if op in ("in", "nin"):
            alternatives = (f"COALESCE({self.typed_equals(path, v, params)}, {self.false})" for v in c.value)
            inner = "(" + " OR ".join(alternatives) + ")"
            return inner if op == "in" else f"NOT {inner}"
        if op in CMP:
            return self.metadata_compare(path, CMP[op], c.value, params)
        # contains: substring of a string value, or an element of an array value;
        # icontains: the same ignoring case (an array element must equal the needle ignoring case)
        if op == "icontains":
            return self.metadata_contains(path, str(c.value).casefold(), True, params)
        return self.metadata_contains(path, c.value, False, params)

    # -- the leaves a dialect writes --------------------------------------------------------------
    @abstractmethod
    def column_in(self, col: str, values: list[Any], params: list[Any]) -> str: ...

    @abstractmethod
    def metadata_exists(self, path: str, params: list[Any]) -> str: ...

    @abstractmethod
    def typed_equals(self, path: str, value: Any, params: list[Any]) -> str:
        """The metadata value at ``path`` equals ``value`` with the same JSON type."""

    @abstractmethod
    def metadata_compare(self, path: str, cmp: str, value: Any, params: list[Any]) -> str:
        """Order comparison: numbers only with JSON numbers, strings (byte-wise) only with strings."""

    @abstractmethod
    def metadata_contains(self, path: str, needle: Any, folded: bool, params: list[Any]) -> str:
        """Substring of a string value or element of an array value (``folded``: ignoring case)."""
