"""A pure-Python reference evaluator of the filter language, written from docs/filters.md alone.

It evaluates a parsed tree (:func:`engram.filters.parse_filters`) against a memory item (the dict the
public API returns) so that property tests can compare every store with the documented semantics:

- sibling conditions AND, ``OR``/``NOT`` as written; every condition is true or false (never unknown);
- a comparison only matches a value of its own JSON type: numbers with numbers (a bool is not a
  number), strings with strings, ``null`` only with ``None``;
- ``ne``/``nin`` are true when the key is missing (and ``eq``/``in``/order operators false);
- ``contains``: a substring of a string value, or an element (same type, equal) of an array value;
  ``icontains`` is the same, case-insensitively (``str.casefold`` on both sides);
- ``{"field": "*"}`` (op ``exists``): the field is present and not null;
- dates compare as instants; ``updated_at`` falls back to ``created_at``;
- ``a.b`` reads key ``b`` of the object under ``a``.

Where a store knowingly differs from the documentation (a bug with its own strict-xfail test), a test
can ask for that store's behaviour with ``deviations`` (see :data:`DEVIATIONS`), so that one known bug
does not hide every other difference a property test could find.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from engram.filters import And, Cond, FilterNode, Not, Or

_MISSING: Any = object()

# Known differences between the stores and docs/filters.md (each one has a strict-xfail test).
DEVIATIONS = frozenset(
    {
        # {"k": "*"} also matches a key whose value is JSON null (docs: "present (not null)").
        "exists_matches_null",
        # contains/icontains also look at the values of an object (docs: strings and arrays only).
        "contains_object_values",
        # icontains on an array matches a substring of an element (contains needs the whole element).
        "icontains_array_substring",
    }
)


def matches(node: FilterNode | None, item: Mapping[str, Any], deviations: Iterable[str] = ()) -> bool:
    """Whether ``item`` satisfies the parsed filter ``node`` (``None`` matches everything)."""
    allowed = frozenset(deviations)
    unknown = allowed - DEVIATIONS
    if unknown:
        raise ValueError(f"unknown deviations: {sorted(unknown)}")
    return True if node is None else _eval(node, item, allowed)


def select(
    node: FilterNode | None, items: Iterable[Mapping[str, Any]], deviations: Iterable[str] = ()
) -> set[str]:
    """The ids of the items that match."""
    return {str(item["id"]) for item in items if matches(node, item, deviations)}


def _eval(node: FilterNode, item: Mapping[str, Any], dev: frozenset[str]) -> bool:
    if isinstance(node, And):
        return all(_eval(c, item, dev) for c in node.children)
    if isinstance(node, Or):
        return any(_eval(c, item, dev) for c in node.children)
    if isinstance(node, Not):
        return not _eval(node.child, item, dev)
    if node.field.kind == "column":
        return _column(node, item.get(node.field.name))
    if node.field.kind == "date":
        return _date(node, _date_value(item, node.field.name))
    return _metadata(node, _lookup(item.get("metadata") or {}, node.field.name), dev)


# -- columns (strings or None) -------------------------------------------------------------------
def _column(c: Cond, value: str | None) -> bool:
    if c.op == "exists":
        return value is not None
    if c.op == "ne":
        return bool(value != c.value)
    if c.op == "nin":
        return value not in c.value
    if value is None:
        return False
    if c.op == "eq":
        return bool(value == c.value)
    if c.op == "in":
        return value in c.value
    if c.op == "contains":
        return isinstance(c.value, str) and c.value in value
    if c.op == "icontains":
        return str(c.value).casefold() in value.casefold()
    return _order(c.op, value, c.value) if isinstance(c.value, str) else False


# -- dates ---------------------------------------------------------------------------------------
def _date_value(item: Mapping[str, Any], name: str) -> datetime | None:
    raw = item.get(name)
    if raw is None and name == "updated_at":
        raw = item.get("created_at")
    if raw is None:
        return None
    moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _date(c: Cond, value: datetime | None) -> bool:
    if c.op == "exists":
        return value is not None
    if c.op == "ne":
        return value is None or value != c.value
    if value is None:
        return False
    if c.op == "eq":
        return bool(value == c.value)
    return _order(c.op, value, c.value)


# -- metadata (typed JSON values) ----------------------------------------------------------------
def _lookup(metadata: Any, path: str) -> Any:
    current = metadata
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _typed_equal(value: Any, wanted: Any) -> bool:
    """JSON equality of a stored value and a scalar filter operand, types included."""
    if wanted is None:
        return value is None
    if isinstance(wanted, bool):
        return isinstance(value, bool) and value is wanted
    if _is_number(wanted):
        return _is_number(value) and value == wanted
    return isinstance(value, str) and value == wanted


def _order(op: str, value: Any, bound: Any) -> bool:
    if op == "gt":
        return bool(value > bound)
    if op == "gte":
        return bool(value >= bound)
    if op == "lt":
        return bool(value < bound)
    if op == "lte":
        return bool(value <= bound)
    raise ValueError(f"not an order operator: {op}")


def _metadata(c: Cond, value: Any, dev: frozenset[str]) -> bool:
    op = c.op
    if op == "exists":
        if value is _MISSING:
            return False
        return value is not None or "exists_matches_null" in dev
    if op == "ne":
        return value is _MISSING or not _typed_equal(value, c.value)
    if op == "nin":
        return value is _MISSING or not any(_typed_equal(value, v) for v in c.value)
    if value is _MISSING:
        return False
    if op == "eq":
        return _typed_equal(value, c.value)
    if op == "in":
        return any(_typed_equal(value, v) for v in c.value)
    if op in ("gt", "gte", "lt", "lte"):
        if _is_number(c.value):
            return _is_number(value) and _order(op, value, c.value)
        return isinstance(value, str) and isinstance(c.value, str) and _order(op, value, c.value)
    if op == "contains":
        return _contains(value, c.value, dev)
    if op == "icontains":
        return _icontains(value, str(c.value), dev)
    raise ValueError(f"unknown operator {op!r}")


def _contains(value: Any, needle: Any, dev: frozenset[str]) -> bool:
    if isinstance(needle, str):
        if isinstance(value, str):
            return needle in value
        elements = _elements(value, dev)
        return any(isinstance(e, str) and e == needle for e in elements)
    # a number: only an element of an array (a number is never a substring of a string)
    return isinstance(value, list) and any(_is_number(e) and e == needle for e in value)


def _icontains(value: Any, needle: str, dev: frozenset[str]) -> bool:
    folded = needle.casefold()
    if isinstance(value, str):
        return folded in value.casefold()
    elements = [e for e in _elements(value, dev) if isinstance(e, str)]
    if "icontains_array_substring" in dev:
        return any(folded in e.casefold() for e in elements)
    return any(e.casefold() == folded for e in elements)


def _elements(value: Any, dev: frozenset[str]) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and "contains_object_values" in dev:
        return list(value.values())
    return []
