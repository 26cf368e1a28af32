"""Anthropic's Claude models through the official ``anthropic`` SDK (extra ``anthropic``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from engram.errors import (
    ConfigError,
    MissingDependencyError,
)
from engram.interfaces import LLM, BackendSettings
from engram.llms._retry import RetryPolicy, call_with_retries, translate_sdk_error
from engram.llms.openai import with_json_instructions


class AnthropicSettings(BackendSettings):
    """Settings of a Claude model."""

    model: str = "claude-haiku-4-5"
    api_key: SecretStr | None = Field(None, description="default: ANTHROPIC_API_KEY")
    base_url: str | None = Field(None, description="default: ANTHROPIC_BASE_URL or the public API")
    temperature: float | None = Field(None, ge=0, le=1, description="None: the model's default")
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(4096, ge=1)
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    retry_base_delay: float = Field(0.5, ge=0)
    retry_max_delay: float = Field(20.0, ge=0)
    json_mode: Literal["tool", "none"] = Field(
        "tool", description="tool: force a tool call whose input is the JSON; none: instructions only"
    )


class AnthropicLLM(LLM):
    """Claude via the Messages API. The SDK is imported on first use."""

    Settings: ClassVar[type[BackendSettings]] = AnthropicSettings

    def __init__(self, settings: AnthropicSettings | None = None, **overrides: Any) -> None:
        base = settings or AnthropicSettings()
        self.settings = (
            AnthropicSettings.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )
        self._client: Any = None
        self._policy = RetryPolicy(
            self.settings.max_retries, self.settings.retry_base_delay, self.settings.retry_max_delay
        )

    @property
    def name(self) -> str:
        return f"anthropic:{self.settings.model}"

    def _client_or_build(self) -> Any:
        if self._client is None:
            try:
                import anthropic
            except ImportError as e:
                raise MissingDependencyError("anthropic", "anthropic") from e
            key = (
                self.settings.api_key.get_secret_value()
                if self.settings.api_key
                else os.environ.get("ANTHROPIC_API_KEY")
            )
            if not key:
                raise ConfigError(
                    "llm.config.api_key is not set for provider 'anthropic'; pass api_key or set "
                    "ANTHROPIC_API_KEY",
                    details={"field": "llm.config.api_key"},
                )
            self._client = anthropic.AsyncAnthropic(
                api_key=key,
                base_url=self.settings.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
                timeout=self.settings.timeout,
                max_retries=0,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> str:
        """One Messages API call; with ``json_schema`` the answer is a forced tool call's JSON input.

        ``temperature`` from the caller is ignored (current Claude models fix their sampling); set
        ``temperature`` in the settings to send one anyway.
        """
        client = self._client_or_build()
        chat = [dict(m) for m in messages]
        use_tool = json_schema is not None and self.settings.json_mode == "tool"
        if json_schema is not None and not use_tool:
            chat = with_json_instructions(chat, json_schema)
        system = "\n\n".join(m.get("content", "") for m in chat if m.get("role") == "system")
        request: dict[str, Any] = {
            "model": self.settings.model,
            "max_tokens": self.settings.max_tokens,
            "messages": [
                {"role": m.get("role", "user"), "content": m.get("content", "")}
                for m in chat
                if m.get("role") != "system"
            ],
        }
        if system:
            request["system"] = system
        # recent SDKs dropped the sampling arguments; a configured value still goes in the body
        extra = {"temperature": self.settings.temperature, "top_p": self.settings.top_p}
        extra = {k: v for k, v in extra.items() if v is not None}
        if extra:
            request["extra_body"] = extra
        if use_tool and json_schema is not None:
            request["tools"] = [
                {"name": "record_output", "description": "Record the answer.", "input_schema": json_schema}
            ]
            request["tool_choice"] = {"type": "tool", "name": "record_output"}
        try:
            response = await call_with_retries(
                lambda: client.messages.create(**request), self._policy, _retry_verdict, label=self.name
            )
        except Exception as e:
            raise self._wrap(e) from e
        texts: list[str] = []
        for block in getattr(response, "content", None) or []:
            kind = getattr(block, "type", None)
            if kind == "tool_use":
                return json.dumps(getattr(block, "input", {}))
            if kind == "text":
                texts.append(str(getattr(block, "text", "")))
        return "".join(texts)

    def _wrap(self, error: Exception) -> Exception:
        import anthropic

        return translate_sdk_error(
            error,
            anthropic,
            name=self.name,
            timeout=self.settings.timeout,
            max_retries=self.settings.max_retries,
        )


def _retry_verdict(error: BaseException) -> float | bool | None:
    import anthropic

    if isinstance(error, anthropic.APITimeoutError | anthropic.APIConnectionError):
        return None
    if isinstance(error, anthropic.APIStatusError):
        if error.status_code in (408, 429, 529) or error.status_code >= 500:
            header = error.response.headers.get("retry-after") if error.response is not None else None
            try:
                return float(header) if header else None
            except ValueError:
                return None
        return False
    return False
