"""Retry with exponential backoff and jitter, shared by the LLM providers."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger("engram.llms")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` extra attempts; delays grow from ``base_delay`` and never exceed ``max_delay``."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, suggested: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        backoff = self.base_delay * (2**attempt) * (0.5 + random.random())
        if suggested is not None and suggested > 0:
            backoff = max(backoff, suggested)
        return float(max(0.0, min(self.max_delay, backoff)))


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retry_after: Callable[[BaseException], float | bool | None],
    *,
    label: str,
) -> T:
    """Run ``fn``; on an exception for which ``retry_after`` is not ``False``, wait and try again.

    ``retry_after(exc)`` returns ``False`` (do not retry), ``None``/``True`` (retry with backoff) or a
    number of seconds the server asked for (``Retry-After``). The last exception propagates.
    """
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as e:
            verdict = retry_after(e)
            if verdict is False or attempt >= policy.max_retries:
                raise
            suggested = None if verdict is None or verdict is True else float(verdict)
            wait = policy.delay(attempt, suggested)
            logger.warning(
                "%s failed (%s); retry %d of %d in %.2fs",
                label,
                type(e).__name__,
                attempt + 1,
                policy.max_retries,
                wait,
            )
            attempt += 1
            await asyncio.sleep(wait)
