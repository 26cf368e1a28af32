"""Provider settings, environment detection, the Anthropic provider (stub server) and ScriptedLLM."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from engram import registry
from engram.config import MemoryConfig
from engram.errors import ConfigError, MissingDependencyError, ProviderError, RateLimitedError
from engram.interfaces import LLM
from engram.llms import llm_from_environment
from engram.llms.anthropic import AnthropicLLM, AnthropicSettings
from engram.llms.openai import (
    VLLMLLM,
    AzureOpenAILLM,
    GroqLLM,
    OllamaLLM,
    OpenAILLM,
    OpenAISettings,
    is_strict_schema,
)
from engram.llms.scripted import ScriptedLLM, ScriptExhaustedError
from tests.test_llm_openai_http import Reply, StubServer


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


# -- environment -----------------------------------------------------------------------------------
def test_no_keys_no_llm() -> None:
    assert llm_from_environment() is None


def test_openai_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    llm = llm_from_environment()
    assert isinstance(llm, OpenAILLM)
    assert llm.name == "openai:gpt-4.1-mini"
    assert llm._base_url() == "http://127.0.0.1:1/v1"
    assert llm._client is None  # nothing built, nothing contacted


def test_anthropic_key_and_model_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("ENGRAM_LLM_MODEL", "claude-haiku-4-5")
    llm = llm_from_environment()
    assert isinstance(llm, AnthropicLLM) and llm.name == "anthropic:claude-haiku-4-5"


# -- settings and registry -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "cls"),
    [
        ("openai", OpenAILLM),
        ("ollama", OllamaLLM),
        ("groq", GroqLLM),
        ("azure_openai", AzureOpenAILLM),
        ("anthropic", AnthropicLLM),
        ("scripted", ScriptedLLM),
        ("lmstudio", OpenAILLM),
        ("openrouter", OpenAILLM),
    ],
)
def test_registered_providers(provider: str, cls: type) -> None:
    config = {"model": "m"} if provider != "scripted" else {"replies": ["hi"]}
    llm = registry.create("llm", provider, config, LLM)
    assert isinstance(llm, cls)


def test_mem0_config_shape_is_accepted() -> None:
    cfg = MemoryConfig.model_validate(
        {
            "llm": {
                "provider": "openai",
                "config": {
                    "model": "gpt-4.1-nano",
                    "openai_base_url": "http://h/v1",
                    "temperature": 0.1,
                    "max_tokens": 2000,
                    "api_key": "k",
                },
            }
        }
    )
    assert cfg.llm is not None
    llm = registry.create("llm", cfg.llm.provider, cfg.llm.config, LLM)
    assert isinstance(llm, OpenAILLM)
    assert llm.settings.base_url == "http://h/v1"
    assert "sk-secret-123" not in repr(llm.settings)  # the key is a secret


def test_unknown_setting_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"llm\.config\.modle"):
        registry.create("llm", "openai", {"modle": "x"}, LLM)


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAILLM()._client_or_build()


def test_vllm_needs_a_model() -> None:
    with pytest.raises(ConfigError, match="model"):
        VLLMLLM()
    assert VLLMLLM(model="Qwen/Qwen2.5-7B-Instruct").name == "vllm:Qwen/Qwen2.5-7B-Instruct"


def test_azure_needs_an_endpoint_and_accepts_mem0_azure_kwargs() -> None:
    llm = AzureOpenAILLM(AzureOpenAILLM.Settings.model_validate({"azure_kwargs": {"api_key": "k"}}))
    with pytest.raises(ConfigError, match="azure_endpoint"):
        llm._client_or_build()
    ok = AzureOpenAILLM(
        AzureOpenAILLM.Settings.model_validate(
            {
                "azure_kwargs": {
                    "api_key": "k",
                    "azure_endpoint": "https://x.openai.azure.com",
                    "azure_deployment": "d",
                }
            }
        )
    )
    assert ok.name == "azure_openai:d"
    assert type(ok._client_or_build()).__name__ == "AsyncAzureOpenAI"


def test_strict_schema_detection() -> None:
    from engram.extract.parse import EXTRACTION_SCHEMA

    assert is_strict_schema(EXTRACTION_SCHEMA)
    assert not is_strict_schema({"type": "object", "properties": {"a": {"type": "string"}}})


def test_openai_settings_validate_ranges() -> None:
    with pytest.raises(ValueError):
        OpenAISettings(timeout=0)


# -- anthropic -------------------------------------------------------------------------------------
def test_anthropic_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(MissingDependencyError) as info:
        AnthropicLLM(AnthropicSettings(api_key="k"))._client_or_build()
    assert info.value.details == {"package": "anthropic", "extra": "anthropic"}


def test_anthropic_missing_key() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicLLM()._client_or_build()


def _anthropic_body(content: list[dict[str, object]]) -> dict[str, object]:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": content,
        "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
    }  # fmt: skip


async def test_anthropic_forced_tool_call(stub: StubServer) -> None:
    facts = {"facts": [{"text": "Alice likes tea"}]}
    stub.replies.append(
        Reply(
            body=_anthropic_body([{"type": "tool_use", "id": "t1", "name": "record_output", "input": facts}])
        )
    )
    llm = AnthropicLLM(AnthropicSettings(api_key="k", base_url=stub.url[:-3], timeout=5))
    out = await llm.complete(
        [{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"}],
        json_schema={"type": "object"},
        temperature=0.0,
    )
    assert json.loads(out) == facts
    sent = stub.requests[0]
    assert sent["system"] == "rules"
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["tool_choice"] == {"type": "tool", "name": "record_output"}
    assert "temperature" not in sent  # current Claude models fix their sampling
    await llm.aclose()


async def test_anthropic_configured_temperature_is_sent(stub: StubServer) -> None:
    stub.replies.append(Reply(body=_anthropic_body([{"type": "text", "text": "ok"}])))
    llm = AnthropicLLM(AnthropicSettings(api_key="k", base_url=stub.url[:-3], temperature=0.2))
    assert await llm.complete([{"role": "user", "content": "hi"}]) == "ok"
    assert stub.requests[0]["temperature"] == 0.2


async def test_anthropic_text_and_retries(stub: StubServer) -> None:
    stub.replies += [
        Reply(529, body={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
        Reply(body=_anthropic_body([{"type": "text", "text": "hello"}])),
    ]
    llm = AnthropicLLM(
        AnthropicSettings(api_key="k", base_url=stub.url[:-3], retry_base_delay=0.01, json_mode="none")
    )
    assert await llm.complete([{"role": "user", "content": "hi"}]) == "hello"
    assert len(stub.requests) == 2


async def test_anthropic_errors_are_wrapped(stub: StubServer) -> None:
    stub.replies += [
        Reply(429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "x"}})
    ] * 2
    llm = AnthropicLLM(
        AnthropicSettings(api_key="k", base_url=stub.url[:-3], max_retries=1, retry_base_delay=0.01)
    )
    with pytest.raises(RateLimitedError):
        await llm.complete([{"role": "user", "content": "hi"}])
    stub.replies.append(
        Reply(400, body={"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
    )
    with pytest.raises(ProviderError, match="HTTP 400"):
        await llm.complete([{"role": "user", "content": "hi"}])


# -- scripted --------------------------------------------------------------------------------------
async def test_scripted_plays_strings_exceptions_and_callables() -> None:
    async def later(messages: list[dict[str, str]]) -> str:
        return "async " + messages[-1]["content"]

    llm = ScriptedLLM(["one", ValueError("boom"), lambda m: m[-1]["content"].upper(), later])
    assert await llm.complete([{"role": "user", "content": "a"}]) == "one"
    with pytest.raises(ValueError, match="boom"):
        await llm.complete([{"role": "user", "content": "b"}])
    assert await llm.complete([{"role": "user", "content": "c"}], json_schema={"type": "object"}) == "C"
    assert await llm.complete([{"role": "user", "content": "d"}]) == "async d"
    assert [c.messages[-1]["content"] for c in llm.calls] == ["a", "b", "c", "d"]
    assert llm.calls[2].json_schema == {"type": "object"}
    assert llm.remaining == 0
    with pytest.raises(ScriptExhaustedError, match="ran out of replies at call 5"):
        await llm.complete([{"role": "user", "content": "e"}])
    llm.push("again")
    assert await llm.complete([{"role": "user", "content": "f"}]) == "again"


def test_scripted_from_config() -> None:
    llm = registry.create("llm", "scripted", {"replies": ["x"], "model": "demo"}, LLM)
    assert llm.name == "demo"
