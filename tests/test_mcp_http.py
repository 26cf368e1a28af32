"""Streamable HTTP MCP on a live `engram serve` subprocess, driven by the official MCP client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("mcp")

sys.path.insert(0, str(Path(__file__).parent / "server"))
from mcphelpers import call, http_session
from srvhelpers import ServerProcess, make_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("mcp-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys(srv: ServerProcess) -> dict[str, str]:
    return {
        "a": make_key(srv.state_path, "acme", "alpha")[0],
        "b": make_key(srv.state_path, "acme", "beta")[0],
        "a_read": make_key(srv.state_path, "acme", "alpha", read_only=True)[0],
    }


def auth(key: str, scheme: str = "Token", user: str | None = "alice") -> dict[str, str]:
    headers = {"Authorization": f"{scheme} {key}"}
    return {**headers, "X-Engram-User-Id": user} if user else headers


async def test_http_tools_end_to_end(srv: ServerProcess, keys: dict[str, str]) -> None:
    async with http_session(srv.url + "/mcp", auth(keys["a"])) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        assert {"add_memory", "search_memories", "memory_history", "delete_all_memories"} <= names
        err, added = await call(s, "add_memory", {"text": "Alice's dog is called Biscuit", "infer": False})
        assert not err
        memory_id = added["results"][0]["id"]
        err, found = await call(s, "search_memories", {"query": "dog name"})
        assert not err and found["results"][0]["id"] == memory_id and "rerank" not in found
        err, reranked = await call(s, "search_memories", {"query": "dog name", "rerank": True})
        assert not err and reranked["results"][0]["id"] == memory_id  # no LLM here: plain, and says so
        assert reranked["rerank"] == {"used": None, "ok": False, "error": "no reranker or LLM is configured"}
        err, _ = await call(
            s, "update_memory", {"memory_id": memory_id, "text": "Alice's dog is Biscuit, a beagle"}
        )
        assert not err
        err, history = await call(s, "memory_history", {"memory_id": memory_id})
        assert not err and [h["event"] for h in history["history"]] == ["ADD", "UPDATE"]
        err, entities = await call(s, "list_entities")
        assert not err and {"type": "user", "name": "alice", "total_memories": 1} in entities["results"]
        err, message = await call(s, "delete_all_memories")
        assert err and "explicit scope" in message
        err, message = await call(s, "search_memories", {"query": "x", "top_k": "many"})
        assert err and "top_k" in message

    # The REST API sees the same project's memory under the same key.
    rest = httpx.get(f"{srv.url}/v1/memories/{memory_id}/", headers={"Authorization": f"Token {keys['a']}"})
    assert rest.status_code == 200 and rest.json()["memory"] == "Alice's dog is Biscuit, a beagle"

    async with http_session(srv.url + "/mcp", auth(keys["a"], "Bearer", user=None)) as s:
        err, message = await call(s, "search_memories", {"query": "dog"})
        assert err and "user_id" in message  # no header, no argument: no scope
        err, found = await call(s, "search_memories", {"query": "dog", "user_id": "alice"})
        assert not err and found["results"][0]["id"] == memory_id
        err, _ = await call(s, "delete_memory", {"memory_id": memory_id})
        assert not err
        err, message = await call(s, "get_memory", {"memory_id": memory_id})
        assert err and "not found" in message


async def test_http_project_isolation_and_keys(srv: ServerProcess, keys: dict[str, str]) -> None:
    async with http_session(srv.url + "/mcp", auth(keys["a"])) as s:
        err, added = await call(s, "add_memory", {"text": "Alice is allergic to peanuts", "infer": False})
        assert not err
    memory_id = added["results"][0]["id"]
    async with http_session(srv.url + "/mcp", auth(keys["b"])) as s:
        err, found = await call(s, "search_memories", {"query": "peanut allergy"})
        assert not err and found["results"] == []
        err, message = await call(s, "get_memory", {"memory_id": memory_id})
        assert err and "not found" in message
        err, message = await call(s, "delete_memory", {"memory_id": memory_id})
        assert err and "not found" in message
        err, listed = await call(s, "get_memories")
        assert not err and listed["total"] == 0
    async with http_session(srv.url + "/mcp", auth(keys["a_read"])) as s:
        err, found = await call(s, "get_memory", {"memory_id": memory_id})
        assert not err and found["memory"] == "Alice is allergic to peanuts"
        err, message = await call(s, "delete_memory", {"memory_id": memory_id})
        assert err and "read-only" in message

    for headers in ({}, {"Authorization": "Token eg-not-a-key"}):
        answer = httpx.post(
            srv.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers
        )
        assert answer.status_code == 401 and "API key" in answer.json()["error"]["message"]


async def test_http_openmemory_url_form(srv: ServerProcess, keys: dict[str, str]) -> None:
    url = srv.url + "/mcp/cursor/http/dora"
    async with http_session(url, auth(keys["a"], user=None)) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        assert names == {
            "add_memories",
            "search_memory",
            "list_memories",
            "delete_memories",
            "delete_all_memories",
        }
        err, added = await call(s, "add_memories", {"text": "I am learning Portuguese"})
        assert not err and added["results"]
        err, listed = await call(s, "list_memories")
        assert (
            not err
            and listed["results"][0]["user_id"] == "dora"
            and listed["results"][0]["app_id"] == "cursor"
        )
        err, found = await call(s, "search_memory", {"query": "language"})
        assert not err and found["results"]
        err, deleted = await call(s, "delete_all_memories")
        assert not err and deleted["deleted"] == len(added["results"])
