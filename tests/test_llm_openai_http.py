"""The real openai-SDK provider against an OpenAI-compatible stub server on 127.0.0.1 (no network)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engram.errors import ExtractionError, ProviderError, ProviderTimeoutError, RateLimitedError
from engram.extract.llm import LLMExtractor
from engram.interfaces import ExtractionRequest
from engram.llms.openai import OllamaLLM, OpenAILLM, OpenAISettings
from engram.types import Scope, StoredMessage, utcnow


@dataclass
class Reply:
    status: int = 200
    content: str | None = None  # the assistant message text (wrapped into a chat completion)
    body: dict[str, Any] | None = None  # raw JSON body instead
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class StubServer:
    """Answers POST /v1/chat/completions with queued replies and records every request body."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                stub.requests.append(json.loads(self.rfile.read(length) or b"{}"))
                stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = stub.replies.pop(0) if stub.replies else Reply(500, body={"error": "script empty"})
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body
                if body is None:
                    body = {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "stub",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": reply.content},
                            }
                        ],
                    }
                data = json.dumps(body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def llm_for(stub: StubServer, **overrides: Any) -> OpenAILLM:
    settings: dict[str, Any] = {
        "model": "stub-model",
        "api_key": "sk-test",
        "base_url": stub.url,
        "timeout": 5.0,
        "max_retries": 2,
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.05,
        **overrides,
    }
    return OpenAILLM(OpenAISettings(**settings))


def request_for(text: str) -> ExtractionRequest:
    now = utcnow()
    message = StoredMessage("msg-1", Scope(user_id="alice"), "user", text, None, now, now)
    return ExtractionRequest(messages=[message], recent=[], related=[], observed_at=now)


GOOD = json.dumps(
    {"facts": [{"text": "alice loves sci-fi movies", "source_message_ids": ["m1"], "attributed_to": "alice"}]}
)


async def test_valid_json_through_the_real_sdk(stub: StubServer) -> None:
    stub.replies.append(Reply(content=GOOD))
    llm = llm_for(stub)
    result = await LLMExtractor(llm).extract(request_for("I love sci-fi movies"))
    assert [f.text for f in result.facts] == ["alice loves sci-fi movies"]
    assert result.facts[0].source_message_ids == ["msg-1"]
    sent = stub.requests[0]
    assert sent["model"] == "stub-model"
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert sent["temperature"] == 0.0
    assert stub.headers[0].get("authorization") == "Bearer sk-test"
    await llm.aclose()


async def test_fenced_json_is_repaired(stub: StubServer) -> None:
    stub.replies.append(Reply(content=f"Sure! Here you go:\n```json\n{GOOD}\n```\nAnything else?"))
    result = await LLMExtractor(llm_for(stub)).extract(request_for("I love sci-fi movies"))
    assert [f.text for f in result.facts] == ["alice loves sci-fi movies"]
    assert len(stub.requests) == 1


async def test_broken_json_twice_fails_loudly_with_raw_output(stub: StubServer) -> None:
    stub.replies += [Reply(content="I think alice likes movies."), Reply(content="Still no JSON, sorry")]
    with pytest.raises(ExtractionError) as info:
        await LLMExtractor(llm_for(stub)).extract(request_for("I love sci-fi movies"))
    assert "I think alice likes movies." in info.value.raw_output
    assert "Still no JSON, sorry" in info.value.raw_output
    assert len(stub.requests) == 2
    correction = stub.requests[1]["messages"][-1]["content"]
    assert "could not be used" in correction


async def test_broken_then_corrected(stub: StubServer) -> None:
    stub.replies += [Reply(content="{'facts': [{'text': 'alice is vegan',"), Reply(content=GOOD)]
    # a truncated answer whose only fact is complete is repaired without a retry
    result = await LLMExtractor(llm_for(stub)).extract(request_for("I'm vegan"))
    assert [f.text for f in result.facts] == ["alice is vegan"]
    assert len(stub.requests) == 1


async def test_429_then_success_is_retried(stub: StubServer) -> None:
    stub.replies += [
        Reply(
            429, body={"error": {"message": "slow down", "type": "rate_limit"}}, headers={"retry-after": "0"}
        ),
        Reply(503, body={"error": {"message": "overloaded"}}),
        Reply(content="hello"),
    ]
    llm = llm_for(stub)
    assert await llm.complete([{"role": "user", "content": "hi"}]) == "hello"
    assert len(stub.requests) == 3


async def test_429_forever_becomes_rate_limited_error(stub: StubServer) -> None:
    stub.replies += [Reply(429, body={"error": {"message": "slow down"}}) for _ in range(3)]
    with pytest.raises(RateLimitedError) as info:
        await llm_for(stub).complete([{"role": "user", "content": "hi"}])
    assert isinstance(info.value.__cause__, Exception)
    assert info.value.provider == "openai:stub-model"
    assert len(stub.requests) == 3  # one call + max_retries=2


async def test_retries_are_configurable(stub: StubServer) -> None:
    stub.replies += [Reply(500, body={"error": {"message": "boom"}}), Reply(content="late")]
    with pytest.raises(ProviderError) as info:
        await llm_for(stub, max_retries=0).complete([{"role": "user", "content": "hi"}])
    assert "HTTP 500" in str(info.value)
    assert len(stub.requests) == 1


async def test_timeout_becomes_provider_timeout_error(stub: StubServer) -> None:
    stub.replies += [Reply(content=GOOD, delay=1.5), Reply(content=GOOD, delay=1.5)]
    with pytest.raises(ProviderTimeoutError) as info:
        await llm_for(stub, timeout=0.3, max_retries=1).complete([{"role": "user", "content": "hi"}])
    assert "timeout" in str(info.value)
    assert len(stub.requests) == 2


async def test_timeout_then_success(stub: StubServer) -> None:
    stub.replies += [Reply(content="slow", delay=1.5), Reply(content="fast")]
    assert await llm_for(stub, timeout=0.3).complete([{"role": "user", "content": "hi"}]) == "fast"


async def test_auth_error_is_not_retried_and_names_the_key(stub: StubServer) -> None:
    stub.replies += [Reply(401, body={"error": {"message": "bad key"}})]
    with pytest.raises(ProviderError) as info:
        await llm_for(stub).complete([{"role": "user", "content": "hi"}])
    assert "api_key" in str(info.value)
    assert len(stub.requests) == 1


async def test_unsupported_schema_falls_back_to_json_object_then_instructions(stub: StubServer) -> None:
    stub.replies += [
        Reply(400, body={"error": {"message": "response_format json_schema is not supported"}}),
        Reply(400, body={"error": {"message": "response_format json_object is not supported"}}),
        Reply(content=GOOD),
    ]
    llm = llm_for(stub)
    out = await llm.complete(
        [{"role": "system", "content": "rules"}, {"role": "user", "content": "x"}],
        json_schema={"type": "object"},
    )
    assert out == GOOD
    assert stub.requests[0]["response_format"]["type"] == "json_schema"
    assert stub.requests[1]["response_format"]["type"] == "json_object"
    assert "response_format" not in stub.requests[2]
    assert "JSON schema" in stub.requests[2]["messages"][0]["content"]
    # the downgrade is remembered
    stub.replies.append(Reply(content=GOOD))
    await llm.complete([{"role": "user", "content": "x"}], json_schema={"type": "object"})
    assert "response_format" not in stub.requests[3]


async def test_temperature_rejected_is_dropped(stub: StubServer) -> None:
    stub.replies += [
        Reply(400, body={"error": {"message": "Unsupported value: 'temperature' does not support 0.0"}}),
        Reply(content="ok"),
    ]
    assert await llm_for(stub).complete([{"role": "user", "content": "x"}], temperature=0.0) == "ok"
    assert "temperature" in stub.requests[0] and "temperature" not in stub.requests[1]


async def test_json_mode_object_and_none(stub: StubServer) -> None:
    stub.replies += [Reply(content=GOOD), Reply(content=GOOD)]
    await llm_for(stub, json_mode="object").complete(
        [{"role": "user", "content": "x"}], json_schema={"type": "object"}
    )
    await llm_for(stub, json_mode="none").complete(
        [{"role": "user", "content": "x"}], json_schema={"type": "object"}
    )
    assert stub.requests[0]["response_format"] == {"type": "json_object"}
    assert "response_format" not in stub.requests[1]
    assert stub.requests[1]["messages"][0]["role"] == "system"


async def test_max_tokens_and_top_p_are_sent(stub: StubServer) -> None:
    stub.replies.append(Reply(content="ok"))
    await llm_for(stub, max_tokens=123, top_p=0.5, temperature=0.7).complete(
        [{"role": "user", "content": "x"}], temperature=0.0
    )
    sent = stub.requests[0]
    assert sent["max_tokens"] == 123 and sent["top_p"] == 0.5 and sent["temperature"] == 0.7


async def test_ollama_subclass_uses_placeholder_key_and_base_url(stub: StubServer) -> None:
    stub.replies.append(Reply(content="ok"))
    llm = OllamaLLM(OllamaLLM.Settings.model_validate({"ollama_base_url": stub.url[:-3], "timeout": 5}))
    assert await llm.complete([{"role": "user", "content": "x"}]) == "ok"
    assert stub.requests[0]["model"] == "llama3.1"
    assert stub.headers[0].get("authorization") == "Bearer ollama"


async def test_connection_refused_is_wrapped() -> None:
    llm = OpenAILLM(OpenAISettings(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2))
    with pytest.raises(ProviderError) as info:
        await llm.complete([{"role": "user", "content": "x"}])
    assert info.value.__cause__ is not None


async def test_engine_picks_up_openai_from_the_environment(
    stub: StubServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engram import AsyncMemory
    from engram.stores.sqlite import SQLiteStore
    from engram.testing import FakeEmbedder

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
    stub.replies.append(Reply(content=f"```json\n{GOOD}\n```"))
    memory = AsyncMemory(store=SQLiteStore(path=tmp_path / "env.db"), embedder=FakeEmbedder())
    try:
        result = await memory.add("I love sci-fi movies", user_id="alice")
    finally:
        await memory.close()
    assert result["extractor"] == "openai:gpt-4.1-mini"
    assert [r["memory"] for r in result["results"]] == ["alice loves sci-fi movies"]
    assert stub.headers[0]["authorization"] == "Bearer sk-env"
    assert "m1 [alice, user]: I love sci-fi movies" in stub.requests[0]["messages"][1]["content"]


async def test_search_reranks_and_rewrites_through_the_real_sdk(stub: StubServer, tmp_path: Any) -> None:
    """rerank=True with only an LLM configured: one chat completion per step, JSON schema requested."""
    from engram import AsyncMemory
    from engram.stores.sqlite import SQLiteStore
    from engram.testing import FakeEmbedder

    store = SQLiteStore(path=tmp_path / "s.db")
    memory = AsyncMemory(store=store, embedder=FakeEmbedder(), llm=llm_for(stub))
    turns = ["tea with lemon every morning", "tea shop on main street", "green tea twice a week"]
    await memory.add([{"role": "user", "content": t} for t in turns], user_id="alice", infer=False)
    plain = [r["memory"] for r in (await memory.search("tea", user_id="alice"))["results"]]
    stub.replies.append(Reply(content='{"keywords": "tea drink", "paraphrases": ["what does she drink"]}'))
    stub.replies.append(Reply(content='{"ranking": [3, 2, 1]}'))
    try:
        found = await memory.search("tea", user_id="alice", rewrite=True, rerank=True)
        stub.replies.extend([Reply(500, body={"error": "down"})] * 3)  # every retry fails
        failed = await memory.search("tea", user_id="alice", rerank=True)
    finally:
        await memory.close()
    assert found["rewrite"]["queries"] == ["tea", "tea drink", "what does she drink"]
    assert found["rerank"] == {"used": "llm:openai:stub-model", "ok": True, "candidates": 3, "reordered": 3}
    rerank_request = stub.requests[1]
    assert rerank_request["model"] == "stub-model"
    assert rerank_request["response_format"]["type"] == "json_schema"
    prompt = rerank_request["messages"][1]["content"]
    shown = [line.split("] ", 1)[1] for line in prompt.splitlines() if line.startswith("[")]
    assert prompt.startswith("Question: tea") and sorted(shown) == sorted(turns)
    assert [r["memory"] for r in found["results"]] == shown[::-1]  # the model's order: 3, 2, 1
    assert [r["memory"] for r in failed["results"]] == plain
    assert failed["rerank"]["ok"] is False and "HTTP 500" in failed["rerank"]["error"]
    assert len(stub.requests) == 5  # one call each, plus the provider's own retries of the failing one
