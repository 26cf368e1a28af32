"""Who said what: the display names extractors use for speakers."""

from __future__ import annotations

import re

from engram.types import StoredMessage

_NAME_RE = re.compile(r"^[^\W\d_][\w .'\-]{0,39}$", re.UNICODE)
_GENERIC = {
    "user",
    "users",
    "default",
    "anonymous",
    "anon",
    "test",
    "guest",
    "me",
    "assistant",
    "agent",
    "bot",
    "ai",
    "system",
    "admin",
    "human",
    "customer",
    "unknown",
}


def looks_like_name(value: str | None) -> bool:
    """True for ids that read like a person's or agent's name ("alice", "Bob Smith"), not "u_8123"."""
    if not value:
        return False
    value = value.strip()
    return (
        bool(_NAME_RE.match(value))
        and not any(ch.isdigit() for ch in value)
        and "_" not in value
        and value.lower() not in _GENERIC
    )


def speaker_name(message: StoredMessage) -> str:
    """The message's ``name``; else the scope's user_id/agent_id when it reads like a name; else
    "User" or "Assistant" (or the role, capitalised)."""
    if message.name and message.name.strip():
        return message.name.strip()
    role = message.role.lower()
    if role == "user":
        return message.scope.user_id if looks_like_name(message.scope.user_id) else "User"  # type: ignore[return-value]
    if role == "assistant":
        return message.scope.agent_id if looks_like_name(message.scope.agent_id) else "Assistant"  # type: ignore[return-value]
    return message.role.capitalize()
