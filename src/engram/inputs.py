"""Validation of public-API arguments: every bad input raises ValidationError naming the field."""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from datetime import UTC, date, datetime
from typing import Any

from engram.errors import LimitExceededError, ScopeRequiredError, ValidationError
from engram.limits import DEFAULT_LIMITS, ROLES, Limits, json_shape
from engram.types import SCOPE_FIELDS, Message, Scope

logger = logging.getLogger("engram")
MAX_ID_LENGTH = DEFAULT_LIMITS.max_id_chars
MAX_MESSAGE_CHARS = DEFAULT_LIMITS.max_message_chars
MAX_METADATA_BYTES = DEFAULT_LIMITS.max_metadata_bytes
_WHITESPACE_RUN = re.compile(r"\s{2,}")


def over_limit(field: str, what: str, limit: str, maximum: int) -> LimitExceededError:
    """The error for ``field`` being over ``limit`` (``what`` says how: "longer than 10 characters")."""
    return LimitExceededError(
        f"{field} is {what} (limit {limit} = {maximum:,})", field=field, limit=limit, maximum=maximum
    )


def message_chars(text: str) -> int:
    """Length of ``text`` with every run of whitespace counted as one character."""
    return len(_WHITESPACE_RUN.sub(" ", text)) if len(text) > 1 else len(text)


def check_length(value: str, field: str, limit: str, maximum: int) -> str:
    """``value`` when it has at most ``maximum`` characters (runs of whitespace counted as one)."""
    if len(value) > maximum and message_chars(value) > maximum:
        raise over_limit(field, f"longer than {maximum:,} characters", limit, maximum)
    return value


def check_id(value: Any, field: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """An id: a non-blank string (valid Unicode, no NUL) of at most ``max_id_chars`` characters."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}", field=field)
    if not value.strip():
        raise ValidationError(f"{field} must not be empty", field=field)
    if len(value) > limits.max_id_chars:
        raise over_limit(
            field, f"longer than {limits.max_id_chars} characters", "max_id_chars", limits.max_id_chars
        )
    return check_text(value, field)


def check_text(value: str, field: str) -> str:
    """Strings every store can keep: a UTF-8 form (no lone surrogates) and no NUL characters."""
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{field} is not valid Unicode (lone surrogate)", field=field) from None
    return value


def _check_json_strings(value: Any, field: str) -> None:
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), field)
            _check_json_strings(item, field)
    elif isinstance(value, list):
        for item in value:
            _check_json_strings(item, field)


def scope_from(*, required: bool, limits: Limits = DEFAULT_LIMITS, **ids: str | None) -> Scope:
    """Check the four scope ids (see :func:`check_id`) and build the Scope."""
    clean: dict[str, str | None] = {}
    for name in SCOPE_FIELDS:
        value = ids.get(name)
        clean[name] = None if value is None else check_id(value, name, limits)
    scope = Scope(**clean)
    if required and scope.is_empty():
        raise ScopeRequiredError(
            "At least one of user_id, agent_id, app_id or run_id is required", field="user_id"
        )
    return scope


def require_scope(scope: Scope, limits: Limits = DEFAULT_LIMITS) -> Scope:
    """``scope`` when it names at least one id and every id is well formed."""
    if scope.is_empty():
        raise ScopeRequiredError(
            "At least one of user_id, agent_id, app_id or run_id is required "
            "(as a keyword argument or inside filters)",
            field="filters",
        )
    for name, value in scope.as_dict().items():
        if value is not None:
            check_id(value, name, limits)
    return scope


def check_filters(filters: Any, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse filters nested deeper or larger than ``max_filter_depth`` / ``max_filter_nodes``."""
    if filters is not None:
        check_json_shape(
            filters,
            "filters",
            depth_limit=("max_filter_depth", limits.max_filter_depth),
            nodes_limit=("max_filter_nodes", limits.max_filter_nodes),
        )


def parse_messages(messages: Any, limits: Limits = DEFAULT_LIMITS) -> list[Message]:
    """A str, one {"role", "content", "name"?} dict, or a list of them (roles: user, assistant, system)."""
    if isinstance(messages, str):
        items: list[Any] = [{"role": "user", "content": messages}]
    elif isinstance(messages, dict):
        items = [messages]
    elif isinstance(messages, list):
        items = messages
    else:
        raise ValidationError(
            f"messages must be a string, a message dict or a list of them, got {type(messages).__name__}",
            field="messages",
        )
    if not items:
        raise ValidationError("messages is empty", field="messages")
    if len(items) > limits.max_messages_per_add:
        cap = limits.max_messages_per_add
        raise over_limit("messages", f"a list of {len(items):,} messages", "max_messages_per_add", cap)
    parsed = [_parse_message(item, f"messages[{i}]", limits) for i, item in enumerate(items)]
    if not any(m.content.strip() for m in parsed):  # blank turns inside a conversation are skipped
        where = "messages[0].content" if len(parsed) == 1 else "messages"
        raise ValidationError(f"{where} has no text: every message is empty or whitespace", field=where)
    return parsed


def _parse_message(item: Any, where: str, limits: Limits) -> Message:
    if not isinstance(item, dict):
        raise ValidationError(f"{where} must be a dict with role and content", field=where)
    role, content, name = item.get("role", "user"), item.get("content"), item.get("name")
    if not isinstance(role, str) or role.strip().lower() not in ROLES:
        raise ValidationError(f"{where}.role must be one of {', '.join(ROLES)}", field=f"{where}.role")
    if not isinstance(content, str):
        raise ValidationError(f"{where}.content must be a string", field=f"{where}.content")
    check_length(content, f"{where}.content", "max_message_chars", limits.max_message_chars)
    check_text(content, f"{where}.content")
    if name is not None:
        name = check_id(name, f"{where}.name", limits)
    return Message(role=role.strip().lower(), content=content, name=name)


def check_memory_text(text: Any, limits: Limits = DEFAULT_LIMITS, *, field: str = "text") -> str:
    """A memory's text: a non-blank string of at most ``max_memory_chars`` characters."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    check_length(text, field, "max_memory_chars", limits.max_memory_chars)
    return check_text(text, field)


def check_json_shape(
    value: Any, field: str, *, depth_limit: tuple[str, int], nodes_limit: tuple[str, int]
) -> None:
    """Refuse ``value`` when it nests deeper, or holds more keys and items, than the limits say."""
    depth, nodes = json_shape(value)
    if depth > depth_limit[1]:
        raise over_limit(field, f"nested {depth} levels deep", *depth_limit)
    if nodes > nodes_limit[1]:
        raise over_limit(field, f"{nodes:,} keys and items", *nodes_limit)


def clean_metadata(
    metadata: Any, *, field: str = "metadata", limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """A JSON-serialisable dict; scope keys inside it are never trusted as scope (stripped, warned)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError(f"{field} must be a dict, got {type(metadata).__name__}", field=field)
    check_json_shape(
        metadata,
        field,
        depth_limit=("max_metadata_depth", limits.max_metadata_depth),
        nodes_limit=("max_metadata_keys", limits.max_metadata_keys),
    )
    for key in metadata:
        if not isinstance(key, str):
            raise ValidationError(f"{field} keys must be strings", field=field)
    smuggled = [k for k in metadata if k in SCOPE_FIELDS]
    if smuggled:
        message = (
            f"Ignoring {', '.join(smuggled)} inside {field}: scope ids are only taken from the "
            "user_id/agent_id/app_id/run_id arguments"
        )
        warnings.warn(message, UserWarning, stacklevel=4)
        logger.warning(message)
        metadata = {k: v for k, v in metadata.items() if k not in SCOPE_FIELDS}
    _check_json_strings(metadata, field)
    try:
        encoded = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"{field} must be JSON-serialisable: {e}", field=field) from e
    size = len(encoded.encode("utf-8"))
    if size > limits.max_metadata_bytes:
        cap = limits.max_metadata_bytes
        raise over_limit(field, f"{size:,} bytes of JSON", "max_metadata_bytes", cap)
    return dict(json.loads(encoded))


def parse_timestamp(value: Any, *, field: str = "timestamp") -> datetime | None:
    """Unix seconds, an ISO 8601 string or a datetime; naive values are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValidationError(f"{field} must be unix seconds or an ISO 8601 string", field=field)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValidationError(f"{field} must be a finite number", field=field)
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as e:
            raise ValidationError(f"{field} is out of range: {value}", field=field) from e
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{field} {value!r} is not ISO 8601 or unix seconds", field=field) from None
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            return aware.astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                f"{field} is outside the calendar once converted to UTC", field=field
            ) from None
    raise ValidationError(f"{field} must be unix seconds or an ISO 8601 string", field=field)


def parse_expiration(value: Any) -> date | None:
    """``YYYY-MM-DD`` (or a date)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValidationError(f"expiration_date must be YYYY-MM-DD, got {value!r}", field="expiration_date")


def check_int(value: Any, field: str, *, low: int, high: int) -> int:
    """An int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{field} must be an integer between {low} and {high}", field=field)
    return value


def check_memory_id(value: Any, limits: Limits = DEFAULT_LIMITS) -> str:
    """A memory id (see :func:`check_id`)."""
    return check_id(value, "memory_id", limits)
