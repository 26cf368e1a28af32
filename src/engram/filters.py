"""The filter language, parsed and validated once into a small tree that every store compiles to SQL.

Grammar (see docs/filters.md)::

    filters  := {key: condition, ...}            sibling keys are ANDed
    key      := "AND" | "OR" | "NOT" | field
    AND/OR/NOT take a list of filters (NOT negates the AND of its list)
    condition:= scalar | "*" | {op: value, ...}  op in OPS; several ops on one field are ANDed
    field    := a scope id | actor_id | role | created_at | updated_at | observed_at | a metadata key
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from engram.errors import FilterError, ValidationError
from engram.types import SCOPE_FIELDS, Scope

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains", "exists"]
OPS: frozenset[str] = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains"})
ORDER_OPS = frozenset({"gt", "gte", "lt", "lte"})
COLUMN_FIELDS: frozenset[str] = frozenset({*SCOPE_FIELDS, "actor_id", "role"})
DATE_FIELDS: frozenset[str] = frozenset({"created_at", "updated_at", "observed_at"})
_METADATA_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}(\.[A-Za-z_][A-Za-z0-9_\-]{0,63}){0,4}$")
Scalar = str | int | float | bool | None
_LOGICAL_KEYS = {
    k: k.lstrip("$").upper() for k in ("AND", "OR", "NOT", "and", "or", "not", "$and", "$or", "$not")
}


@dataclass(frozen=True, slots=True)
class Field:
    """Where a condition reads its value: a column, a date column, or a metadata key path."""

    kind: Literal["column", "date", "metadata"]
    name: str  # column name, or the metadata key path ("a.b" for nested objects)

    def metadata_path(self) -> list[str]:
        return self.name.split(".")


@dataclass(frozen=True, slots=True)
class Cond:
    field: Field
    op: Op
    value: Any  # scalar, list of scalars, or datetime for date fields
    path: str


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: FilterNode


FilterNode = Cond | And | Or | Not


def parse_filters(raw: Any, *, path: str = "filters") -> FilterNode | None:
    """Validate ``raw`` and return its tree (``None`` for no filter). Raises :class:`FilterError`."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise FilterError(f"expected an object, got {type(raw).__name__}", path=path)
    nodes: list[FilterNode] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            raise FilterError("keys must be strings", path=path)
        sub = f"{path}.{key}"
        logical = _LOGICAL_KEYS.get(key)
        if logical is not None:
            nodes.append(_parse_logical(logical, value, sub))
        elif key == "metadata" and isinstance(value, dict):
            nodes.extend(_parse_field(k, v, f"{sub}.{k}", metadata=True) for k, v in value.items())
        else:
            nodes.append(_parse_field(key, value, sub, metadata=False))
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _parse_logical(kind: str, value: Any, path: str) -> FilterNode:
    items = (
        value if isinstance(value, list) else [value] if kind == "NOT" and isinstance(value, dict) else None
    )
    if items is None:
        raise FilterError(f"{kind} takes a list of filter objects", path=path)
    if not items:
        raise FilterError(f"{kind} needs at least one filter", path=path)
    children: list[FilterNode] = []
    for i, item in enumerate(items):
        child = parse_filters(item, path=f"{path}[{i}]")
        if child is None:
            raise FilterError("empty filter object", path=f"{path}[{i}]")
        children.append(child)
    if kind == "AND":
        return children[0] if len(children) == 1 else And(tuple(children))
    if kind == "OR":
        return children[0] if len(children) == 1 else Or(tuple(children))
    return Not(children[0] if len(children) == 1 else And(tuple(children)))


def _resolve_field(key: str, path: str, *, metadata: bool) -> Field:
    if not metadata:
        if key in COLUMN_FIELDS:
            return Field("column", key)
        if key in DATE_FIELDS:
            return Field("date", key)
    if not _METADATA_KEY_RE.match(key):
        raise FilterError(
            f"{key!r} is not a valid field name (letters, digits, '_', '-', dotted for nested keys)",
            path=path,
        )
    return Field("metadata", key)


def _parse_field(key: str, value: Any, path: str, *, metadata: bool) -> FilterNode:
    field = _resolve_field(key, path, metadata=metadata)
    if value == "*":
        return Cond(field, "exists", True, path)
    if isinstance(value, dict):
        if not value:
            raise FilterError("empty operator object", path=path)
        conds: list[FilterNode] = []
        for op_key, operand in value.items():
            op = op_key[1:] if isinstance(op_key, str) and op_key.startswith("$") else op_key
            if op not in OPS:
                raise FilterError(
                    f"unknown operator {op_key!r}; use one of {', '.join(sorted(OPS))}",
                    path=f"{path}.{op_key}",
                )
            conds.append(_make_cond(field, op, operand, f"{path}.{op_key}"))
        return conds[0] if len(conds) == 1 else And(tuple(conds))
    return _make_cond(field, "eq", value, path)


def _make_cond(field: Field, op: str, operand: Any, path: str) -> FilterNode:
    if field.kind == "date":
        return _make_date_cond(field, op, operand, path)
    if op in ("in", "nin"):
        if not isinstance(operand, list) or not operand:
            raise FilterError(f"'{op}' takes a non-empty list", path=path)
        values = [_check_scalar(field, op, v, f"{path}[{i}]") for i, v in enumerate(operand)]
        return Cond(field, op, values, path)  # type: ignore[arg-type]
    if op in ("contains", "icontains"):
        if (op == "icontains" or field.kind == "column") and not isinstance(operand, str):
            raise FilterError(f"'{op}' takes a string here", path=path)
        if not isinstance(operand, str | int | float) or isinstance(operand, bool):
            raise FilterError(f"'{op}' takes a string or a number", path=path)
        _check_value(operand, path)
        return Cond(field, op, operand, path)  # type: ignore[arg-type]
    value = _check_scalar(field, op, operand, path)
    if op in ORDER_OPS and (value is None or isinstance(value, bool)):
        raise FilterError(f"'{op}' takes a number or a string", path=path)
    return Cond(field, op, value, path)  # type: ignore[arg-type]


def _check_scalar(field: Field, op: str, value: Any, path: str) -> Scalar:
    if isinstance(value, list | dict | tuple | set):
        raise FilterError(f"'{op}' takes a single value, got {type(value).__name__}", path=path)
    if not isinstance(value, str | int | float | bool) and value is not None:
        raise FilterError(f"unsupported value type {type(value).__name__}", path=path)
    if field.kind == "column" and not isinstance(value, str):
        raise FilterError(f"{field.name} values are strings, got {type(value).__name__}", path=path)
    _check_value(value, path)
    return value


_INT64 = 2**63


def _check_value(value: Any, path: str) -> None:
    """Values every store can bind: finite numbers within 64 bits, strings with a UTF-8 form and no NUL."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise FilterError("integers must fit in 64 bits", path=path)
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError("numbers must be finite (no NaN or infinity)", path=path)
    if isinstance(value, str):
        if "\x00" in value:
            raise FilterError("strings must not contain NUL characters", path=path)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise FilterError("strings must be valid Unicode (no lone surrogates)", path=path) from None


def _make_date_cond(field: Field, op: str, operand: Any, path: str) -> FilterNode:
    """Dates compare as instants; a bare ``YYYY-MM-DD`` means the whole day (UTC)."""
    if op not in ORDER_OPS and op not in ("eq", "ne"):
        raise FilterError(f"'{op}' does not apply to dates; use eq, ne, gt, gte, lt or lte", path=path)
    moment = _parse_datetime(operand, path)
    whole_day = isinstance(operand, str) and len(operand.strip()) == 10
    if not whole_day:
        return Cond(field, op, moment, path)  # type: ignore[arg-type]
    try:
        next_day = moment + timedelta(days=1)
    except OverflowError:
        raise FilterError("date is at the end of the calendar", path=path) from None
    if op == "lte":
        return Cond(field, "lt", next_day, path)
    if op == "gt":
        return Cond(field, "gte", next_day, path)
    if op in ("gte", "lt"):
        return Cond(field, op, moment, path)  # type: ignore[arg-type]
    day = And((Cond(field, "gte", moment, path), Cond(field, "lt", next_day, path)))
    return day if op == "eq" else Not(day)


def _parse_datetime(value: Any, path: str) -> datetime:
    """An aware datetime in UTC; anything the calendar cannot hold is a FilterError."""
    if isinstance(value, bool) or value is None:
        raise FilterError("expected an ISO 8601 date or a unix timestamp", path=path)
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            text = value.strip().replace("Z", "+00:00")
            if len(text) == 10:
                d = date.fromisoformat(text)
                return datetime(d.year, d.month, d.day, tzinfo=UTC)
            parsed = datetime.fromisoformat(text)
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise FilterError(
            f"{value!r} is not a date this calendar can hold (ISO 8601 or unix seconds)", path=path
        ) from None
    raise FilterError("expected an ISO 8601 date or a unix timestamp", path=path)


def split_scope(
    filters: Any, *, kwargs_scope: Scope, path: str = "filters"
) -> tuple[Scope, FilterNode | None]:
    """Take scope ids out of ``filters`` (mem0 2.x) and merge them with keyword ids (mem0 1.x).

    Only top-level equality conditions on scope ids count as the scope; the rest stays a filter,
    which can only narrow the scope further. A scope id given both ways must agree.
    """
    scope_values = kwargs_scope.as_dict()
    rest: dict[str, Any] = {}
    if filters is not None and not isinstance(filters, dict):
        raise FilterError(f"expected an object, got {type(filters).__name__}", path=path)
    for key, value in (filters or {}).items():
        wanted = _scope_equality(key, value)
        if wanted is not None:
            _merge_scope_value(scope_values, key, wanted, f"{path}.{key}")
        elif _LOGICAL_KEYS.get(key) == "AND" and isinstance(value, list):
            remaining = []
            for i, item in enumerate(value):
                if isinstance(item, dict) and len(item) == 1:
                    ((k, v),) = item.items()
                    inner = _scope_equality(k, v)
                    if inner is not None:
                        _merge_scope_value(scope_values, k, inner, f"{path}.{key}[{i}].{k}")
                        continue
                remaining.append(item)
            if remaining:
                rest[key] = remaining
        else:
            rest[key] = value
    tree = parse_filters(rest, path=path) if rest else None
    return Scope(**scope_values), tree


def _scope_equality(key: Any, value: Any) -> str | None:
    """The id when ``{key: value}`` says "this scope id equals a string" (plain, eq or $eq)."""
    if key not in SCOPE_FIELDS:
        return None
    if isinstance(value, dict) and len(value) == 1:
        ((op, value),) = value.items()
        if op not in ("eq", "$eq"):
            return None
    return value if isinstance(value, str) and value != "*" else None


def _merge_scope_value(scope_values: dict[str, str | None], key: str, value: str, path: str) -> None:
    if not value.strip():
        raise FilterError(f"{key} must not be empty", path=path)
    current = scope_values.get(key)
    if current is not None and current != value:
        raise ValidationError(
            f"{key} is given twice with different values ({current!r} and {value!r})", field=key
        )
    scope_values[key] = value
