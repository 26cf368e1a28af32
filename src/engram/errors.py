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

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, details=merged)
        self.field = field


class FilterError(ValidationError):
    """A search/list filter is malformed; ``path`` says where in the filter tree."""

    code = "invalid_filter"

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

    def __init__(self, message: str, *, raw_output: str) -> None:
        super().__init__(
            f"{message}\n--- raw model output ---\n{raw_output}", details={"raw_output": raw_output}
        )
        self.raw_output = raw_output


class InferenceUnavailableError(EngramError):
    """``infer=True`` was asked for but no extractor is available."""

    code = "inference_unavailable"
