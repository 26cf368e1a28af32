"""Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint: OpenAI, Ollama, vLLM, LM Studio.

Uses the official ``openai`` SDK (``AsyncOpenAI``), created on the first call. The SDK retries 429s,
5xx answers and timeouts with backoff (``max_retries``); what still fails is raised as
:class:`~engram.errors.ProviderError` (:class:`~engram.errors.RateLimitedError`,
:class:`~engram.errors.ProviderTimeoutError`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, SecretStr

from engram.embedders._common import build_settings, check_texts, l2_normalize
from engram.errors import ConfigError, ProviderError, ProviderTimeoutError, RateLimitedError
from engram.interfaces import BackendSettings, Embedder
from engram.types import EmbedderInfo, Vector

#: Native output dimension of well-known embedding models (an Ollama ``:tag`` is ignored).
KNOWN_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "nomic-embed-text": 768,
    "mxbai-embed-large": 1024,
    "all-minilm": 384,
}


def _env_api_key() -> SecretStr | None:
    value = os.environ.get("OPENAI_API_KEY")
    return SecretStr(value) if value else None


def _env_base_url() -> str | None:
    return os.environ.get("OPENAI_BASE_URL") or None


def _native_dimension(model: str) -> int | None:
    name = model.rsplit("/", 1)[-1]  # "nomic-ai/nomic-embed-text" and "nomic-embed-text:latest"
    return KNOWN_DIMENSIONS.get(name) or KNOWN_DIMENSIONS.get(name.split(":", 1)[0])


class OpenAIEmbedder(Embedder):
    """Embeddings over the OpenAI API or a compatible server (set ``base_url``)."""

    class Settings(BackendSettings):
        """Settings of the OpenAI-compatible embedder."""

        model: str = Field("text-embedding-3-small", min_length=1)
        api_key: SecretStr | None = Field(
            default_factory=_env_api_key, description="default: $OPENAI_API_KEY; optional with base_url"
        )
        base_url: str | None = Field(
            default_factory=_env_base_url,
            description="e.g. http://localhost:11434/v1 (Ollama); default: $OPENAI_BASE_URL or OpenAI",
        )
        dimensions: int | None = Field(
            None, ge=1, le=65_536, description="vector size; required for models Engram does not know"
        )
        send_dimensions: bool | None = Field(
            None,
            description="pass `dimensions` in the request (shortens text-embedding-3 vectors); "
            "default: only for text-embedding-3 models when dimensions is set",
        )
        timeout: float = Field(30.0, gt=0, le=3600, description="seconds per request")
        max_retries: int = Field(3, ge=0, le=20, description="SDK retries on 429, 5xx and timeouts")
        batch_size: int = Field(256, ge=1, le=2048, description="texts per request")

    def __init__(self, settings: OpenAIEmbedder.Settings | None = None, **overrides: Any) -> None:
        self.settings = s = build_settings(OpenAIEmbedder.Settings, settings, overrides)
        native = _native_dimension(s.model)
        if s.dimensions is None and native is None:
            known = ", ".join(sorted(KNOWN_DIMENSIONS))
            raise ConfigError(
                f"embedder.config.dimensions is required for model {s.model!r}: Engram knows the "
                f"vector size only of {known}. Set dimensions to the size your model returns.",
                details={"field": "dimensions", "model": s.model},
            )
        if s.api_key is None and s.base_url is None:
            raise ConfigError(
                "embedder.config.api_key is required for the OpenAI API: set it or OPENAI_API_KEY "
                "(a local server such as Ollama needs base_url instead, e.g. http://localhost:11434/v1).",
                details={"field": "api_key"},
            )
        self._dim: int = s.dimensions if s.dimensions is not None else native  # type: ignore[assignment]
        if s.send_dimensions is None:
            self._send_dimensions = s.dimensions is not None and s.model.startswith("text-embedding-3")
        else:
            self._send_dimensions = s.send_dimensions and s.dimensions is not None
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @property
    def info(self) -> EmbedderInfo:
        return EmbedderInfo(name=f"openai:{self.settings.model}", dim=self._dim)

    def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            # The HTTP connection pool belongs to the loop that made it (e.g. a previous asyncio.run).
            self._client = None
        if self._client is None:
            self._client_loop = loop
            try:
                from openai import AsyncOpenAI
            except ImportError as e:  # pragma: no cover - a core dependency
                raise ConfigError("The openai embedder needs the 'openai' package: pip install openai") from e
            s = self.settings
            self._client = AsyncOpenAI(
                # Local servers (Ollama, vLLM, LM Studio) accept any key; the SDK insists on one.
                api_key=s.api_key.get_secret_value() if s.api_key is not None else "not-needed",
                base_url=s.base_url,
                timeout=s.timeout,
                max_retries=s.max_retries,
            )
        return self._client

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> Vector:
        items = check_texts(texts)
        out = np.empty((len(items), self._dim), dtype=np.float32)
        size = self.settings.batch_size
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            out[start : start + len(batch)] = await self._request(batch)
        return l2_normalize(out)

    async def _request(self, batch: list[str]) -> np.ndarray:
        import openai

        s = self.settings
        where = s.base_url or "the OpenAI API"
        kwargs: dict[str, Any] = {"model": s.model, "encoding_format": "float"}
        if self._send_dimensions:
            kwargs["dimensions"] = s.dimensions
        # The API rejects empty strings; a single space embeds as "nothing".
        inputs = [t if t.strip() else " " for t in batch]
        try:
            response = await self._get_client().embeddings.create(input=inputs, **kwargs)
        except openai.RateLimitError as e:
            raise RateLimitedError(
                f"{where} kept answering 429 (rate limited) for model {s.model!r} after "
                f"{s.max_retries} retries: {e.message}",
                provider="openai",
                details={"status": 429},
            ) from e
        except openai.APITimeoutError as e:
            raise ProviderTimeoutError(
                f"{where} did not answer within {s.timeout}s (timeout) for model {s.model!r}",
                provider="openai",
            ) from e
        except openai.APIConnectionError as e:
            raise ProviderError(
                f"Could not connect to {where} (base_url) to embed with {s.model!r}: {e}", provider="openai"
            ) from e
        except openai.AuthenticationError as e:
            raise ProviderError(
                f"{where} rejected the api_key (401): {e.message}", provider="openai", details={"status": 401}
            ) from e
        except openai.NotFoundError as e:
            raise ProviderError(
                f"{where} does not know model {s.model!r} or the path (404): {e.message}",
                provider="openai",
                details={"status": 404},
            ) from e
        except openai.APIStatusError as e:
            raise ProviderError(
                f"{where} failed to embed with {s.model!r} (HTTP {e.status_code}): {e.message}",
                provider="openai",
                details={"status": e.status_code},
            ) from e
        except openai.OpenAIError as e:
            raise ProviderError(
                f"Embedding with {s.model!r} at {where} failed: {e}", provider="openai"
            ) from e
        return self._vectors(response, len(batch))

    def _vectors(self, response: Any, expected: int) -> np.ndarray:
        data = sorted(getattr(response, "data", None) or [], key=lambda d: d.index)
        if len(data) != expected:
            raise ProviderError(
                f"The embeddings endpoint returned {len(data)} vectors for {expected} texts",
                provider="openai",
            )
        try:
            vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise ProviderError(
                f"The embeddings endpoint returned malformed vectors: {e}", provider="openai"
            ) from e
        if vectors.ndim != 2 or vectors.shape[1] != self._dim:
            got = vectors.shape[1] if vectors.ndim == 2 else "ragged"
            raise ProviderError(
                f"Model {self.settings.model!r} returned {got}-dimensional vectors but the embedder is "
                f"configured for {self._dim} (dimensions). Set dimensions={got} if that is the model's "
                "size (a store filled with another size must then be reset or moved).",
                provider="openai",
                details={"field": "dimensions", "expected": self._dim, "got": got},
            )
        if not np.isfinite(vectors).all():
            raise ProviderError("The embeddings endpoint returned NaN or infinite values", provider="openai")
        return vectors

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()
