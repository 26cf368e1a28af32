"""Engram's error hierarchy: everything Engram raises derives from :class:`EngramError`.

Vendor exceptions (openai, anthropic, psycopg, sqlite3, onnxruntime...) are caught at the backend
boundary and re-raised as one of these with ``raise ... from e``.
"""

from __future__ import annotations

from typing import Any

# The distribution name on PyPI (``engram`` there is another project); the import name stays ``engram``.
DISTRIBUTION = "engram-recall"


class EngramError(Exception):
    """Base class of every error Engram raises."""

    code: str = "engram_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    @classmethod
    def from_wire(cls, message: str, details: dict[str, Any]) -> EngramError:
        """Rebuild an error an Engram server answered (``details`` as sent; no subclass ``__init__``)."""
        error = cls.__new__(cls)
        EngramError.__init__(error, message, details=details)
        for attr in ("field", "provider", "path", "raw_output"):
            if attr in details:
                setattr(error, attr, details[attr])
        return error


class ConfigError(EngramError):
    """The configuration is invalid (unknown provider, bad setting, missing key)."""

    code = "config_error"


class MissingDependencyError(ConfigError):
    """An optional backend needs a package that is not installed; the message names the extra."""

    code = "missing_dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"This feature needs the '{package}' package. "
            f'Install it with: pip install "{DISTRIBUTION}[{extra}]"',
            details={"package": package, "extra": extra},
        )


class ValidationError(EngramError):
    """An argument given to Engram is invalid. ``field`` names the offending argument."""

    code = "validation_error"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, details=merged)
        self.field = field


class LimitExceededError(ValidationError):
    """An input is over one of the limits in :class:`engram.limits.Limits` (HTTP 413).

    ``details`` holds ``field``, ``limit`` (the setting's name) and ``max`` (its value).
    """

    code = "limit_exceeded"

    def __init__(self, message: str, *, field: str, limit: str, maximum: int) -> None:
        super().__init__(message, field=field, details={"limit": limit, "max": maximum})


class FilterError(ValidationError):
    """A search/list filter is malformed; ``path`` says where in the filter tree."""

    code = "invalid_filter"
    path: str = ""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"Invalid filter at {path}: {message}", field="filters", details={"path": path})
        self.path = path


class ScopeRequiredError(ValidationError):
    """An operation needs at least one of user_id, agent_id, app_id, run_id."""

    code = "scope_required"


class NotFoundError(EngramError):
    """The memory (or other object) does not exist in this namespace."""

    code = "not_found"


class ConflictError(EngramError):
    """The operation conflicts with the current state (for example a reused idempotency key)."""

    code = "conflict"


class StoreError(EngramError):
    """The storage backend failed."""

    code = "store_error"


class EmbedderMismatchError(StoreError):
    """The store was filled by a different embedder (name or dimension) than the one configured."""

    code = "embedder_mismatch"


class ProviderError(EngramError):
    """A model provider (LLM, embedder, reranker) failed."""

    code = "provider_error"
    provider: str = "engram-server"

    def __init__(self, message: str, *, provider: str, details: dict[str, Any] | None = None) -> None:
        merged = dict(details or {})
        merged.setdefault("provider", provider)
        super().__init__(message, details=merged)
        self.provider = provider


class RateLimitedError(ProviderError):
    """The provider answered 429 after every retry."""

    code = "rate_limited"


class ProviderTimeoutError(ProviderError):
    """The provider did not answer in time."""

    code = "provider_timeout"


class ExtractionError(EngramError):
    """The LLM's output could not be turned into memories; ``raw_output`` keeps what it said."""

    code = "extraction_failed"
    raw_output: str = ""

    def __init__(self, message: str, *, raw_output: str) -> None:
        super().__init__(
            f"{message}\n--- raw model output ---\n{raw_output}", details={"raw_output": raw_output}
        )
        self.raw_output = raw_output


class InferenceUnavailableError(EngramError):
    """``infer=True`` was asked for but no extractor is available."""

    code = "inference_unavailable"


class NotAuthenticatedError(EngramError):
    """The server refused the API key (401)."""

    code = "not_authenticated"


class InvalidApiKeyError(NotAuthenticatedError):
    """The API key is unknown or revoked (401)."""

    code = "invalid_api_key"


class PermissionDeniedError(EngramError):
    """The key may not do this (403), for example a write with a read-only key."""

    code = "forbidden"


class RequestTooLargeError(ValidationError):
    """The request body is over the server's size limit (413)."""

    code = "payload_too_large"


class ServerError(EngramError):
    """The server failed (5xx) or could not be reached."""

    code = "internal_error"


# One table: error code -> HTTP status. The server answers with it; engram's client reads it back.
HTTP_STATUS: dict[str, int] = {
    "validation_error": 422,
    "invalid_filter": 422,
    "scope_required": 400,
    "limit_exceeded": 413,
    "payload_too_large": 413,
    "invalid_json": 400,
    "bad_request": 400,
    "config_error": 400,
    "inference_unavailable": 400,
    "not_authenticated": 401,
    "invalid_api_key": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "rate_limited": 429,
    "provider_error": 502,
    "extraction_failed": 502,
    "provider_timeout": 504,
    "timeout": 504,
    "missing_dependency": 500,
    "store_error": 500,
    "embedder_mismatch": 500,
    "internal_error": 500,
    "engram_error": 500,
}


def status_of(error: EngramError) -> int:
    """The HTTP status of ``error``: its code's, else its nearest ancestor's with a known code."""
    if error.code in HTTP_STATUS:
        return HTTP_STATUS[error.code]
    for cls in type(error).__mro__:
        code = getattr(cls, "code", None)
        if isinstance(code, str) and code in HTTP_STATUS:
            return HTTP_STATUS[code]
    return 500


def _classes() -> dict[str, type[EngramError]]:
    found: dict[str, type[EngramError]] = {}
    pending: list[type[EngramError]] = [EngramError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def class_for(code: str, status: int) -> type[EngramError]:
    """The exception class for an error ``code`` (else for ``status``) answered by an Engram server."""
    classes = _classes()
    if code in classes and code != "engram_error":
        return classes[code]
    by_status: dict[int, type[EngramError]] = {401: NotAuthenticatedError, 403: PermissionDeniedError}
    by_status[404] = NotFoundError
    by_status.update({409: ConflictError, 413: RequestTooLargeError, 429: RateLimitedError})
    if status in by_status:
        return by_status[status]
    if 400 <= status < 500:
        return ValidationError
    return ProviderError if status in (502, 503, 504) else ServerError
