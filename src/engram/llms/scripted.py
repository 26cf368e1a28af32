"""ScriptedLLM: a deterministic LLM double for tests and demos (no model, no network)."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from engram.interfaces import LLM, BackendSettings

Reply = str | BaseException | Callable[[list[dict[str, str]]], "str | Awaitable[str]"]


class ScriptExhaustedError(AssertionError):
    """The ScriptedLLM was called more times than it has replies (a test bug, never swallowed)."""


class ScriptedSettings(BackendSettings):
    """Replies given by config (``{"provider": "scripted", "config": {"replies": [...]}}``)."""

    replies: list[str] = Field(default_factory=list)
    model: str = "scripted"


@dataclass(slots=True)
class ScriptedCall:
    """One recorded call."""

    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None = None
    temperature: float | None = None
    prompt_text: str = field(default="")  # every message's content joined, for easy ``in`` checks


class ScriptedLLM(LLM):
    """Answers with queued replies, in order, and records every call.

    A reply is a string (returned), an exception (raised) or a callable taking the chat messages and
    returning a string (sync or async). ``calls`` keeps what each call received.
    """

    Settings: ClassVar[type[BackendSettings]] = ScriptedSettings

    def __init__(
        self, replies: Sequence[Reply] | ScriptedSettings | None = None, *, name: str = "scripted"
    ) -> None:
        if isinstance(replies, ScriptedSettings):
            name = replies.model
            replies = list(replies.replies)
        self._name = name
        self._queue: deque[Reply] = deque(replies or [])
        self.calls: list[ScriptedCall] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def remaining(self) -> int:
        """How many replies are still queued."""
        return len(self._queue)

    def push(self, *replies: Reply) -> None:
        """Queue more replies."""
        self._queue.extend(replies)

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> str:
        """Record the call and play the next reply."""
        chat = [dict(m) for m in messages]
        self.calls.append(
            ScriptedCall(chat, json_schema, temperature, "\n".join(m.get("content", "") for m in chat))
        )
        if not self._queue:
            raise ScriptExhaustedError(
                f"ScriptedLLM {self._name!r} ran out of replies at call {len(self.calls)}; "
                f"last prompt began: {self.calls[-1].prompt_text[:300]!r}"
            )
        reply = self._queue.popleft()
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            produced = reply(chat)
            if inspect.isawaitable(produced):
                produced = await produced
            return str(produced)
        return reply
