"""The memories table's filter box: a short syntax compiled to Engram's filter language.

    user:alice app:travel category=food rating>=4 created>=2024-05-01 "window seat"

``field:value`` and ``field=value`` are equality, ``!=``, ``>``, ``>=``, ``<``, ``<=`` compare and
``~`` is case-insensitive "contains". ``user``, ``agent``, ``app``, ``run``, ``actor``, ``created``,
``updated`` and ``observed`` abbreviate the ``*_id`` / ``*_at`` fields; any other name is a metadata key.
Words without an operator (quote phrases) must appear in the memory's text. Input starting with ``{``
is a JSON filter exactly as in docs/filters.md.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from engram.errors import FilterError

ALIASES = {
    "user": "user_id",
    "agent": "agent_id",
    "app": "app_id",
    "run": "run_id",
    "actor": "actor_id",
    "created": "created_at",
    "updated": "updated_at",
    "observed": "observed_at",
}
STRING_FIELDS = frozenset(
    {"user_id", "agent_id", "app_id", "run_id", "actor_id", "role", "created_at", "updated_at", "observed_at"}
)
_CONDITION = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)(!=|>=|<=|=|:|>|<|~)(.*)$", re.DOTALL)
_OPS = {"=": "eq", ":": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "~": "icontains"}


@dataclass
class ParsedFilter:
    """What the box says: an Engram filter (or None) and words the text must contain."""

    filters: dict[str, Any] | None = None
    words: list[str] = field(default_factory=list)

    def text_matches(self, text: str) -> bool:
        folded = text.casefold()
        return all(word.casefold() in folded for word in self.words)


def parse_filter_box(raw: str | None) -> ParsedFilter:
    """Compile the box's text; raises :class:`FilterError` naming the bad part."""
    text = (raw or "").strip()
    if not text:
        return ParsedFilter()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise FilterError(f"not valid JSON: {e.msg} (column {e.colno})", path="filter") from e
        if not isinstance(value, dict):
            raise FilterError("a JSON filter must be an object", path="filter")
        return ParsedFilter(filters=value)
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise FilterError(f"{e} (close the quote)", path="filter") from e
    conditions: list[dict[str, Any]] = []
    words: list[str] = []
    for token in tokens:
        match = _CONDITION.match(token)
        if match is None:
            words.append(token)
            continue
        name, op, value = match.groups()
        if value == "":
            raise FilterError(f"{token!r} has no value after {op!r}", path="filter")
        key = ALIASES.get(name, name)
        conditions.append({key: _condition(key, _OPS[op], value)})
    filters: dict[str, Any] | None = None
    if len(conditions) == 1:
        filters = conditions[0]
    elif conditions:
        filters = {"AND": conditions}
    return ParsedFilter(filters=filters, words=words)


def _condition(key: str, op: str, raw: str) -> Any:
    value: Any = raw if key in STRING_FIELDS or op == "icontains" else _scalar(raw)
    return value if op == "eq" else {op: value}


def _scalar(raw: str) -> Any:
    """Numbers and true/false/null as JSON values; anything else stays a string."""
    if raw in ("true", "false", "null"):
        return json.loads(raw)
    if re.fullmatch(r"-?\d+(\.\d+)?", raw):
        return json.loads(raw)
    return raw
