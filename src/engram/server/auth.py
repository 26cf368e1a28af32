"""API-key authentication and per-project rate limits."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from engram.server.errors import ApiError
from engram.service import KeyContext, ServiceState, hash_api_key


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per project: ``per_minute`` requests a minute, bursts up to that many."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, project_id: str, per_minute: int) -> float:
        """0 when the request may go on, else the seconds to wait before retrying."""
        if per_minute <= 0:
            return 0.0
        now = time.monotonic()
        rate = per_minute / 60.0
        with self._lock:
            bucket = self._buckets.get(project_id)
            if bucket is None:
                bucket = self._buckets[project_id] = _Bucket(float(per_minute), now)
            bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


def _token_from(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None


class Auth:
    """The FastAPI dependency that turns ``Authorization`` into a :class:`KeyContext`."""

    def __init__(self, state: ServiceState, limiter: RateLimiter, default_limit: int) -> None:
        self.state = state
        self.limiter = limiter
        self.default_limit = default_limit
        self._cache: dict[str, tuple[float, KeyContext | None]] = {}

    async def resolve(self, key: str) -> KeyContext | None:
        digest = hash_api_key(key)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < 2.0:  # short cache: revocation takes effect within 2 s
            return hit[1]
        ctx = await self.state.lookup_key(digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, ctx)
        return ctx

    async def __call__(self, request: Request) -> KeyContext:
        key = _token_from(request.headers.get("authorization"))
        if key is None:
            raise ApiError(
                "not_authenticated",
                "Missing API key: send 'Authorization: Token <key>'",
                headers={"WWW-Authenticate": "Token"},
            )
        ctx = await self.resolve(key)
        if ctx is None:
            raise ApiError(
                "invalid_api_key", "Invalid or revoked API key", headers={"WWW-Authenticate": "Token"}
            )
        limit = ctx.project.rate_limit_per_minute
        per_minute = self.default_limit if limit is None else limit
        wait = await self.state.take_token(ctx.project.id, per_minute)
        if wait is None:  # no shared buckets in this state backend: this process's own
            wait = self.limiter.check(ctx.project.id, per_minute)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise ApiError(
                "rate_limited",
                f"Rate limit exceeded for project {ctx.project.name}; retry in {retry} s",
                details={"retry_after": retry},
                headers={"Retry-After": str(retry)},
            )
        request.state.ctx = ctx
        return ctx


def require_write(ctx: KeyContext) -> None:
    """Refuse writes with a read-only key (403)."""
    if ctx.key.read_only:
        raise ApiError("forbidden", "This API key is read-only", details={"key_id": ctx.key.id})


def check_project(ctx: KeyContext, org_id: Any = None, project_id: Any = None) -> None:
    """mem0 1.x clients send ``org_id``/``project_id`` with every call: they must be the key's own.

    Another project answers 404, exactly like one that does not exist.
    """
    if project_id not in (None, "") and str(project_id) != ctx.project.id:
        raise ApiError("not_found", f"project {project_id} not found", details={"field": "project_id"})
    if org_id not in (None, "") and str(org_id) != ctx.org.id:
        raise ApiError("not_found", f"organization {org_id} not found", details={"field": "org_id"})
