"""Validation of public-API arguments: every bad input raises ValidationError naming the field."""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from datetime import UTC, date, datetime
from typing import Any

from engram.errors import ScopeRequiredError, ValidationError
from engram.types import SCOPE_FIELDS, Message, Scope

logger = logging.getLogger("engram")
MAX_ID_LENGTH = 256
MAX_MESSAGE_CHARS = 1_000_000  # default of MemoryConfig.max_message_chars
_WHITESPACE_RUN = re.compile(r"\s{2,}")
MAX_METADATA_BYTES = 64_000


def message_chars(text: str) -> int:
    """Length of ``text`` with every run of whitespace counted as one character."""
    return len(_WHITESPACE_RUN.sub(" ", text))


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


def scope_from(*, required: bool, **ids: str | None) -> Scope:
    """Check the four scope ids (strings, not blank, not too long) and build the Scope."""
    clean: dict[str, str | None] = {}
    for name in SCOPE_FIELDS:
        value = ids.get(name)
        if value is None:
            clean[name] = None
            continue
        if not isinstance(value, str):
            raise ValidationError(f"{name} must be a string, got {type(value).__name__}", field=name)
        if not value.strip():
            raise ValidationError(f"{name} must not be empty", field=name)
        if len(value) > MAX_ID_LENGTH:
            raise ValidationError(f"{name} is longer than {MAX_ID_LENGTH} characters", field=name)
        clean[name] = check_text(value, name)
    scope = Scope(**clean)
    if required and scope.is_empty():
        raise ScopeRequiredError(
            "At least one of user_id, agent_id, app_id or run_id is required", field="user_id"
        )
    return scope


def require_scope(scope: Scope) -> Scope:
    if scope.is_empty():
        raise ScopeRequiredError(
            "At least one of user_id, agent_id, app_id or run_id is required "
            "(as a keyword argument or inside filters)",
            field="filters",
        )
    return scope_from(required=True, **scope.as_dict())


def parse_messages(messages: Any, max_chars: int = MAX_MESSAGE_CHARS) -> list[Message]:
    """A str, one {"role", "content", "name"?} dict, or a list of them."""
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
    parsed: list[Message] = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where} must be a dict with role and content", field=where)
        role, content, name = item.get("role", "user"), item.get("content"), item.get("name")
        if not isinstance(role, str) or not role.strip():
            raise ValidationError(f"{where}.role must be a non-empty string", field=f"{where}.role")
        if not isinstance(content, str):
            raise ValidationError(f"{where}.content must be a string", field=f"{where}.content")
        if len(content) > max_chars and message_chars(content) > max_chars:
            raise ValidationError(
                f"{where}.content is longer than max_message_chars ({max_chars:,} characters, runs of "
                "whitespace counted as one)",
                field=f"{where}.content",
            )
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValidationError(f"{where}.name must be a non-empty string", field=f"{where}.name")
        check_text(content, f"{where}.content")
        check_text(role, f"{where}.role")
        if name is not None:
            check_text(name, f"{where}.name")
        parsed.append(Message(role=role.strip().lower(), content=content, name=name))
    return parsed


def clean_metadata(metadata: Any, *, field: str = "metadata") -> dict[str, Any]:
    """A JSON-serialisable dict; scope keys inside it are never trusted as scope (stripped, warned)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError(f"{field} must be a dict, got {type(metadata).__name__}", field=field)
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
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValidationError(f"{field} is larger than {MAX_METADATA_BYTES} bytes", field=field)
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
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{field} must be an integer between {low} and {high}", field=field)
    return value


def check_memory_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
        raise ValidationError("memory_id must be a non-empty string", field="memory_id")
    return check_text(value, "memory_id")
