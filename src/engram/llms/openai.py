"""OpenAI-compatible chat models through the official ``openai`` SDK.

One class serves OpenAI, Azure OpenAI and every server that speaks the OpenAI chat API (Ollama,
vLLM, LM Studio, llama.cpp's server, OpenRouter, Groq...). The thin subclasses at the end only change
defaults (base URL, API-key variable, JSON mode) so that mem0 provider names keep working.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator

from engram.errors import ConfigError, ProviderError
from engram.interfaces import LLM, BackendSettings
from engram.llms._retry import RetryPolicy, call_with_retries, translate_sdk_error

if TYPE_CHECKING:
    from openai import AsyncOpenAI

logger = logging.getLogger("engram.llms")
JsonMode = Literal["schema", "object", "none"]
_DOWNGRADE: dict[str, JsonMode] = {"schema": "object", "object": "none"}
_BASE_URL_ALIASES = AliasChoices(
    "base_url", "openai_base_url", "ollama_base_url", "lmstudio_base_url", "vllm_base_url"
)


class OpenAISettings(BackendSettings):
    """Settings of an OpenAI-compatible chat model (mem0's key names are accepted too)."""

    model: str = "gpt-4.1-mini"
    api_key: SecretStr | None = Field(None, description="default: the provider's env variable")
    base_url: str | None = Field(None, validation_alias=_BASE_URL_ALIASES)
    temperature: float | None = Field(None, ge=0, le=2, description="None: use the caller's value")
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    max_retries: int = Field(3, ge=0, le=20, description="retries on 429, 5xx, timeouts")
    retry_base_delay: float = Field(0.5, ge=0)
    retry_max_delay: float = Field(20.0, ge=0)
    json_mode: JsonMode = Field(
        "schema", description="schema: structured output; object: JSON mode; none: instructions only"
    )
    azure_endpoint: str | None = None
    azure_deployment: str | None = None
    api_version: str | None = None
    default_headers: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten_mem0_azure(cls, data: Any) -> Any:
        """mem0 nests Azure settings under ``azure_kwargs``; accept that shape."""
        if isinstance(data, dict) and isinstance(data.get("azure_kwargs"), dict):
            data = dict(data)
            for key, value in data.pop("azure_kwargs").items():
                if value is not None:
                    data.setdefault(key, value)
        return data


class OpenAILLM(LLM):
    """Chat completions against OpenAI or any OpenAI-compatible server. No I/O until the first call."""

    Settings: ClassVar[type[BackendSettings]] = OpenAISettings
    provider: ClassVar[str] = "openai"
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    base_url_env: ClassVar[str | None] = "OPENAI_BASE_URL"
    placeholder_key: ClassVar[str | None] = None  # local servers accept any key
    default_base_url: ClassVar[str | None] = None

    def __init__(self, settings: OpenAISettings | None = None, **overrides: Any) -> None:
        settings_cls: type[OpenAISettings] = self.Settings  # type: ignore[assignment]
        if settings is None:
            self.settings: OpenAISettings = settings_cls.model_validate(overrides)
        elif overrides:
            self.settings = settings_cls.model_validate({**settings.model_dump(), **overrides})
        else:
            self.settings = settings
        self._client: AsyncOpenAI | None = None
        self._json_mode: JsonMode = self.settings.json_mode
        self._send_temperature = True
        self._policy = RetryPolicy(
            self.settings.max_retries, self.settings.retry_base_delay, self.settings.retry_max_delay
        )

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.settings.azure_deployment or self.settings.model}"

    # -- client ------------------------------------------------------------------------------
    def _api_key(self) -> str:
        if self.settings.api_key is not None:
            return self.settings.api_key.get_secret_value()
        for var in self.api_key_env:
            if os.environ.get(var):
                return os.environ[var]
        if self.placeholder_key is not None:
            return self.placeholder_key
        names = " or ".join(self.api_key_env)
        raise ConfigError(
            f"llm.config.api_key is not set for provider {self.provider!r}; pass api_key or set {names}",
            details={"field": "llm.config.api_key"},
        )

    def _base_url(self) -> str | None:
        if self.settings.base_url:
            return self.settings.base_url
        if self.base_url_env and os.environ.get(self.base_url_env):
            return os.environ[self.base_url_env]
        return self.default_base_url

    def _client_or_build(self) -> AsyncOpenAI:
        if self._client is None:
            import openai

            s = self.settings
            common: dict[str, Any] = {
                "api_key": self._api_key(),
                "timeout": s.timeout,
                "max_retries": 0,  # retries are ours: configurable, logged, wrapped
                "default_headers": s.default_headers,
            }
            if s.azure_endpoint or self.provider == "azure_openai":
                endpoint = s.azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
                if not endpoint:
                    raise ConfigError(
                        "llm.config.azure_endpoint is required for Azure OpenAI "
                        "(or set AZURE_OPENAI_ENDPOINT)",
                        details={"field": "llm.config.azure_endpoint"},
                    )
                self._client = openai.AsyncAzureOpenAI(
                    azure_endpoint=endpoint,
                    azure_deployment=s.azure_deployment,
                    api_version=s.api_version or os.environ.get("OPENAI_API_VERSION") or "2024-10-21",
                    **common,
                )
            else:
                self._client = openai.AsyncOpenAI(base_url=self._base_url(), **common)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- completion --------------------------------------------------------------------------
    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> str:
        """One chat completion; JSON per ``json_mode`` when ``json_schema`` is given."""
        client = self._client_or_build()
        while True:
            request = self._request(messages, json_schema, temperature)
            try:
                response = await call_with_retries(
                    lambda request=request: client.chat.completions.create(**request),  # type: ignore[misc]
                    self._policy,
                    _retry_verdict,
                    label=self.name,
                )
            except Exception as e:
                if self._downgrade(e, json_schema is not None, "temperature" in request):
                    continue
                raise self._wrap(e) from e
            return self._content(response)

    def _request(
        self, messages: Sequence[dict[str, str]], schema: dict[str, Any] | None, temperature: float | None
    ) -> dict[str, Any]:
        s = self.settings
        chat = [dict(m) for m in messages]
        request: dict[str, Any] = {"model": s.azure_deployment or s.model, "messages": chat}
        temp = s.temperature if s.temperature is not None else temperature
        if temp is not None and self._send_temperature:
            request["temperature"] = temp
        if s.top_p is not None:
            request["top_p"] = s.top_p
        if s.max_tokens is not None:
            official = self._base_url() is None
            request["max_completion_tokens" if official else "max_tokens"] = s.max_tokens
        if schema is not None:
            if self._json_mode == "schema":
                request["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": is_strict_schema(schema)},
                }
            else:
                if self._json_mode == "object":
                    request["response_format"] = {"type": "json_object"}
                request["messages"] = with_json_instructions(chat, schema)
        return request

    def _downgrade(self, error: Exception, wanted_json: bool, sent_temperature: bool) -> bool:
        """On a 400/422 about an unsupported option, fall back once per option and retry."""
        status = getattr(error, "status_code", None)
        if status not in (400, 422):
            return False
        text = str(error).lower()
        if sent_temperature and "temperature" in text:
            logger.warning("%s rejected temperature; sending requests without it", self.name)
            self._send_temperature = False
            return True
        if wanted_json and self._json_mode in _DOWNGRADE:
            lower = _DOWNGRADE[self._json_mode]
            logger.warning("%s rejected json_mode=%s; falling back to %s", self.name, self._json_mode, lower)
            self._json_mode = lower
            return True
        return False

    def _content(self, response: Any) -> str:
        try:
            message = response.choices[0].message
        except (AttributeError, IndexError, TypeError) as e:
            raise ProviderError(f"{self.name} returned no choices", provider=self.name) from e
        content = getattr(message, "content", None)
        if content:
            return str(content)
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise ProviderError(f"{self.name} refused: {refusal}", provider=self.name)
        return ""

    def _wrap(self, error: Exception) -> Exception:
        import openai

        return translate_sdk_error(
            error,
            openai,
            name=self.name,
            timeout=self.settings.timeout,
            max_retries=self.settings.max_retries,
            hints={401: " (check api_key)", 403: " (check api_key)", 404: " (check model and base_url)"},
            unreachable=self._base_url() or "api.openai.com",
        )


def _retry_verdict(error: BaseException) -> float | bool | None:
    import openai

    if isinstance(error, openai.APITimeoutError | openai.APIConnectionError):
        return None
    if isinstance(error, openai.APIStatusError):
        if error.status_code == 429 or error.status_code >= 500 or error.status_code == 408:
            header = error.response.headers.get("retry-after") if error.response is not None else None
            try:
                return float(header) if header else None
            except ValueError:
                return None
        return False
    return False


def is_strict_schema(schema: Any) -> bool:
    """True when every object lists all its properties as required and forbids others (strict mode)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            props = schema.get("properties", {})
            if schema.get("additionalProperties") is not False or set(schema.get("required", [])) != set(
                props
            ):
                return False
        return all(is_strict_schema(v) for v in schema.values())
    if isinstance(schema, list):
        return all(is_strict_schema(v) for v in schema)
    return True


def with_json_instructions(messages: list[dict[str, str]], schema: dict[str, Any]) -> list[dict[str, str]]:
    """Append "answer with JSON matching this schema" to the system message (adding one if needed)."""
    note = (
        "Answer with one JSON value that matches this JSON schema, and nothing else (no prose, no code "
        f"fences):\n{json.dumps(schema, separators=(',', ':'))}"
    )
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content', '')}\n\n{note}"
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


class AzureOpenAISettings(OpenAISettings):
    api_version: str | None = "2024-10-21"


class AzureOpenAILLM(OpenAILLM):
    """Azure OpenAI (``azure_endpoint``, ``azure_deployment``, ``api_version``; key AZURE_OPENAI_API_KEY)."""

    Settings = AzureOpenAISettings
    provider = "azure_openai"
    api_key_env = ("AZURE_OPENAI_API_KEY",)
    base_url_env = None


class OllamaSettings(OpenAISettings):
    model: str = "llama3.1"


class OllamaLLM(OpenAILLM):
    """Ollama's OpenAI-compatible endpoint (default http://localhost:11434/v1)."""

    Settings = OllamaSettings
    provider = "ollama"
    default_base_url = "http://localhost:11434/v1"
    api_key_env = ("OLLAMA_API_KEY",)
    base_url_env = "OLLAMA_BASE_URL"
    placeholder_key = "ollama"

    def _base_url(self) -> str | None:
        url = super()._base_url()
        if url and not url.rstrip("/").endswith("/v1"):
            url = url.rstrip("/") + "/v1"  # mem0 users give the bare Ollama URL
        return url


class LMStudioSettings(OpenAISettings):
    model: str = "local-model"


class LMStudioLLM(OpenAILLM):
    """LM Studio's local server (default http://localhost:1234/v1)."""

    Settings = LMStudioSettings
    provider = "lmstudio"
    default_base_url = "http://localhost:1234/v1"
    api_key_env = ("LMSTUDIO_API_KEY",)
    base_url_env = None
    placeholder_key = "lm-studio"


class VLLMSettings(OpenAISettings):
    model: str = Field(..., description="the served model name (vllm serve <model>)")


class VLLMLLM(OpenAILLM):
    """A vLLM server (default http://localhost:8000/v1); ``model`` is required."""

    Settings = VLLMSettings
    provider = "vllm"
    default_base_url = "http://localhost:8000/v1"
    api_key_env = ("VLLM_API_KEY",)
    base_url_env = None
    placeholder_key = "vllm"

    def __init__(self, settings: OpenAISettings | None = None, **overrides: Any) -> None:
        if settings is None and "model" not in overrides:
            raise ConfigError("llm.config.model is required for vllm", details={"field": "llm.config.model"})
        super().__init__(settings, **overrides)


class GroqSettings(OpenAISettings):
    model: str = "llama-3.3-70b-versatile"
    json_mode: JsonMode = "object"


class GroqLLM(OpenAILLM):
    """Groq's OpenAI-compatible API (key GROQ_API_KEY)."""

    Settings = GroqSettings
    provider = "groq"
    default_base_url = "https://api.groq.com/openai/v1"
    api_key_env = ("GROQ_API_KEY",)
    base_url_env = None


class OpenRouterSettings(OpenAISettings):
    model: str = "openai/gpt-4.1-mini"
    json_mode: JsonMode = "object"


class OpenRouterLLM(OpenAILLM):
    """OpenRouter (key OPENROUTER_API_KEY)."""

    Settings = OpenRouterSettings
    provider = "openrouter"
    default_base_url = "https://openrouter.ai/api/v1"
    api_key_env = ("OPENROUTER_API_KEY",)
    base_url_env = None
