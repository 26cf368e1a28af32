"""``rerank`` (mem0's Platform field) and ``rewrite`` in a search request reach the server's LLM: a real
server subprocess with a scripted LLM, driven over loopback HTTP (raw, and by mem0's own client)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engram import MemoryClient

sys.path.insert(0, str(Path(__file__).parent / "server"))
from mcphelpers import call, http_session
from srvhelpers import MEM0_PY_VERSIONS, ServerProcess, client_env, make_key, mem0_python

pytestmark = pytest.mark.slow
TURNS = ["I drink green tea every morning", "the tea shop closes at six", "I ordered a new teapot"]
# the scripted LLM answers in this order: the mem0 client's rerank, our rerank, a rewrite, then the
# rerank of an MCP client's search
REPLIES = [
    '{"ranking": [3, 1]}',
    '{"ranking": [2]}',
    '{"keywords": "teapot kettle", "paraphrases": []}',
    '{"ranking": [3]}',
]
MEM0_SEARCH = """
import json, sys
from mem0 import MemoryClient
client = MemoryClient(api_key=sys.argv[2], host=sys.argv[1])
found = client.search("tea", filters={"user_id": "alice"}, rerank=True)
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {
        "embedder": {"provider": "fake"},
        "llm": {"provider": "scripted", "config": {"replies": REPLIES}},
        "llm_from_env": False,
    }
    server = ServerProcess(tmp_path_factory.mktemp("llm-search"), memory_config=config).start()
    yield server
    server.stop()


def search(srv: ServerProcess, key: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(
        srv.url + "/v3/memories/search/",
        json={"query": "tea", "filters": {"user_id": "alice"}, **body},
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_rerank_and_rewrite_in_a_search_request_use_the_llm(srv: ServerProcess, tmp_path: Path) -> None:
    key = make_key(srv.state_path, "acme", "llm")[0]
    added = httpx.post(
        srv.url + "/v3/memories/add/",
        json={
            "messages": [{"role": "user", "content": t} for t in TURNS],
            "user_id": "alice",
            "infer": False,
            "async_mode": False,
        },
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    )
    assert added.status_code == 200, added.text
    plain = search(srv, key)
    order = [r["memory"] for r in plain["results"]]
    assert "rerank" not in plain and sorted(order) == sorted(TURNS)

    python = mem0_python(MEM0_PY_VERSIONS["v2"])
    proc = subprocess.run(
        [str(python), "-c", MEM0_SEARCH, srv.url, key],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_mem0 = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["memory"] for r in by_mem0["results"]] == [order[2], order[0], order[1]]
    assert by_mem0["rerank"] == {"used": "llm:scripted", "ok": True, "candidates": 3, "reordered": 2}

    ours = search(srv, key, rerank=True, top_k=1)
    assert [r["memory"] for r in ours["results"]] == [order[1]] and ours["rerank"]["candidates"] == 3

    with MemoryClient(api_key=key, host=srv.url) as client:  # Engram's own client passes rewrite
        rewritten = client.search("tea", user_id="alice", rewrite=True)
    assert rewritten["rewrite"]["queries"] == ["tea", "teapot kettle"]
    assert rewritten["results"][0]["memory"] == "I ordered a new teapot"

    async def mcp_search() -> dict[str, Any]:  # an agent asks for reranking through the MCP tool
        headers = {"Authorization": f"Token {key}", "X-Engram-User-Id": "alice"}
        async with http_session(srv.url + "/mcp", headers) as session:
            err, found = await call(session, "search_memories", {"query": "tea", "rerank": True})
        assert not err, found
        return dict(found)

    by_agent = asyncio.run(mcp_search())
    assert [r["memory"] for r in by_agent["results"]] == [order[2], order[0], order[1]]
    assert by_agent["rerank"] == {"used": "llm:scripted", "ok": True, "candidates": 3, "reordered": 1}


async def test_without_an_llm_rerank_is_plain_ranking_with_a_note(tmp_path: Path) -> None:
    """mem0's clients may always send ``rerank``: with no reranker and no LLM the search still answers."""
    from engram.embedders.fake import FakeEmbedder
    from engram.memory import AsyncMemory
    from engram.server.app import create_app
    from engram.server.settings import ServerSettings
    from engram.stores.sqlite import SQLiteStore

    engine = AsyncMemory(
        {"llm_from_env": False}, store=SQLiteStore(path=tmp_path / "m.db"), embedder=FakeEmbedder()
    )
    app = create_app(ServerSettings(home=tmp_path, worker_tasks=0), engine=engine)
    state = app.state.server.state
    await state.open()
    org = await state.ensure_org("o")
    key = await state.create_key((await state.ensure_project(org.id, "p")).id)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://engram",
        headers={"Authorization": f"Token {key}"},
    ) as http:
        added = {"messages": "I drink green tea", "user_id": "alice", "infer": False, "async_mode": False}
        assert (await http.post("/v3/memories/add/", json=added)).status_code == 200
        body = {"query": "tea", "filters": {"user_id": "alice"}}
        reranked = await http.post("/v3/memories/search/", json={**body, "rerank": True})
        rewritten = await http.post("/v3/memories/search/", json={**body, "rewrite": True})
    await state.close()
    await engine.close()
    assert reranked.status_code == 200
    assert [r["memory"] for r in reranked.json()["results"]] == ["I drink green tea"]
    assert reranked.json()["rerank"] == {
        "used": None,
        "ok": False,
        "error": "no reranker or LLM is configured",
    }
    assert rewritten.status_code == 400 and "rewrite=True needs an LLM" in rewritten.text
