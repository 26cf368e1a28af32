"""Retry with exponential backoff and jitter, and SDK error translation, shared by the LLM providers."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TypeVar

from engram.errors import ConfigError, ProviderError, ProviderTimeoutError, RateLimitedError

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


def short_message(error: BaseException, limit: int = 500) -> str:
    """The error's text, cut to ``limit`` characters."""
    text = str(error) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def translate_sdk_error(
    error: Exception,
    sdk: ModuleType,
    *,
    name: str,
    timeout: float,
    max_retries: int,
    hints: dict[int, str] | None = None,
    unreachable: str | None = None,
) -> Exception:
    """Map an ``openai``/``anthropic`` SDK exception (same class names in both) to Engram's errors.

    ``hints`` add advice per HTTP status; ``unreachable`` names the address in connection errors.
    """
    if isinstance(error, ConfigError | ProviderError):
        return error
    if isinstance(error, sdk.APITimeoutError):
        return ProviderTimeoutError(f"{name} did not answer within {timeout}s (timeout)", provider=name)
    if isinstance(error, sdk.RateLimitError):
        return RateLimitedError(f"{name} is rate limiting (429) after {max_retries} retries", provider=name)
    if isinstance(error, sdk.APIStatusError):
        hint = (hints or {}).get(error.status_code, "")
        return ProviderError(
            f"{name} answered HTTP {error.status_code}{hint}: {short_message(error)}",
            provider=name,
            details={"status_code": error.status_code},
        )
    if unreachable is not None and isinstance(error, sdk.APIConnectionError):
        return ProviderError(
            f"{name} could not be reached at {unreachable}: {short_message(error)}", provider=name
        )
    return ProviderError(f"{name} failed: {short_message(error)}", provider=name)
