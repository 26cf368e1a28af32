"""Import from mem0's Platform API: a recorded Platform answer set (fields Engram's server does not
produce), with an interruption and a resume; and Engram's own server as the source (a second project)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engram import AsyncMemory, MemoryClient
from engram.errors import ProviderError
from engram.stores.sqlite import SQLiteStore
from engram.testing import FakeEmbedder
from engram.transfer.importer import ImportReport
from engram.transfer.mem0_platform import Checkpoint, PlatformReader, import_platform

sys.path.insert(0, str(Path(__file__).parent / "server"))
from srvhelpers import ServerProcess, make_key

DATA = Path(__file__).parent / "data" / "mem0_platform"
HOST = "https://platform.example"


class RecordedPlatform:
    """Answers like mem0's Platform from the recorded files; can fail one request on purpose."""

    def __init__(self) -> None:
        self.history = json.loads((DATA / "history.json").read_text())
        self.requests: list[str] = []
        self.fail_on: str | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Token m0-test-key"
        path, page = request.url.path, request.url.params.get("page", "1")
        label = f"{request.method} {path} page={page}"
        self.requests.append(label)
        if label == self.fail_on:
            self.fail_on = None
            raise httpx.ConnectError("connection reset", request=request)
        if path == "/v1/entities/":
            return httpx.Response(200, json=json.loads((DATA / "entities.json").read_text()))
        if path == "/v2/memories/":
            ((key, name),) = json.loads(request.content)["filters"]["AND"][0].items()
            return httpx.Response(
                200, content=(DATA / f"memories_{key[:-3]}_{name}_{page}.json").read_bytes()
            )
        memory_id = path.split("/")[3]
        return httpx.Response(200, json=self.history.get(memory_id, []))


@pytest.fixture
async def engine(tmp_path: Path) -> Any:
    memory = AsyncMemory(store=SQLiteStore(path=tmp_path / "engram.db"), embedder=FakeEmbedder())
    yield memory
    await memory.close()


async def test_recorded_platform_import_resumes_after_an_interruption(
    engine: AsyncMemory, tmp_path: Path
) -> None:
    platform = RecordedPlatform()
    platform.fail_on = "POST /v2/memories/ page=2"
    checkpoint_path = tmp_path / "import.checkpoint"
    reader = PlatformReader("m0-test-key", HOST, transport=httpx.MockTransport(platform))
    with pytest.raises(ProviderError, match="connection reset"):
        await import_platform(engine, reader, Checkpoint.load(checkpoint_path, HOST))
    assert (await engine.get_all(user_id="maya"))["total"] == 2  # the first page is in
    saved = json.loads(checkpoint_path.read_text())
    assert (saved["current"], saved["page"], saved["report"]["imported"]) == ("user:maya", 1, 2)

    platform.requests.clear()
    seen: list[tuple[int, int]] = []
    report = await import_platform(
        engine, reader, Checkpoint.load(checkpoint_path, HOST), lambda d, t: seen.append((d, t))
    )
    assert "POST /v2/memories/ page=1" in platform.requests  # the agent's first page...
    assert platform.requests.count("POST /v2/memories/ page=1") == 1  # ...but not maya's again
    assert report.as_dict() == {"imported": 4, "skipped": 0, "conflicts": []}
    assert seen[-1] == (4, 4)
    assert not checkpoint_path.exists()  # finished: the next run starts over, skipping what is here
    again = await import_platform(engine, reader, Checkpoint.load(checkpoint_path, HOST))
    assert again.as_dict() == {"imported": 0, "skipped": 4, "conflicts": []}
    await reader.aclose()

    aisle = await engine.get("0c8e4a7e-1f0b-4a53-9d6e-7a1b2c3d4e02")
    assert aisle is not None
    assert (aisle["memory"], aisle["user_id"], aisle["app_id"]) == (
        "Maya prefers aisle seats",
        "maya",
        "travel-app",
    )
    assert aisle["metadata"] == {"categories": ["travel", "preferences"]}
    assert aisle["expiration_date"] == "2030-12-31"
    assert aisle["updated_at"] == "2025-03-04T10:00:00+00:00"
    history = await engine.history(aisle["id"])
    assert [(h["id"], h["event"], h["new_memory"]) for h in history] == [
        ("5d0c9b8a-7e6f-4a3b-8c2d-1e0f9a8b7c01", "ADD", "Maya prefers window seats"),
        ("5d0c9b8a-7e6f-4a3b-8c2d-1e0f9a8b7c02", "UPDATE", "Maya prefers aisle seats"),
    ]
    peanuts = await engine.get("0c8e4a7e-1f0b-4a53-9d6e-7a1b2c3d4e01")
    assert peanuts is not None and peanuts["created_at"] == "2025-03-01T17:15:00+00:00"
    assert peanuts["metadata"] == {"source": "intake form", "categories": ["health"]}
    manager = await engine.get("0c8e4a7e-1f0b-4a53-9d6e-7a1b2c3d4e03")
    assert manager is not None and manager["run_id"] == "onboarding-2"
    found = await engine.search("Escalate billing disputes to tier 2", agent_id="helpdesk")
    assert found["results"][0]["id"] == "0c8e4a7e-1f0b-4a53-9d6e-7a1b2c3d4e04"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield server
    server.stop()


async def import_from_server(
    srv: ServerProcess, key: str, target: Path
) -> tuple[ImportReport, dict[str, Any]]:
    engine = AsyncMemory(store=SQLiteStore(path=target), embedder=FakeEmbedder())
    reader = PlatformReader(key, srv.url)
    try:
        report = await import_platform(engine, reader, Checkpoint.load(target.with_suffix(".cp"), srv.url))
        seen = {"ana": await engine.get_all(user_id="ana"), "other": await engine.get_all(user_id="otto")}
        ids = [m["id"] for m in seen["ana"]["results"]]
        seen["history"] = await engine.history(ids[0]) if ids else []
        seen["found"] = await engine.search("I drive a red Volvo", user_id="ana")
        return report, seen
    finally:
        await reader.aclose()
        await engine.close()


@pytest.mark.slow
def test_engram_server_as_the_source(srv: ServerProcess, tmp_path: Path) -> None:
    """Everything of the key's project arrives, nothing of the server's other project."""
    source_key = make_key(srv.state_path, "acme", "old-project")[0]
    other_key = make_key(srv.state_path, "acme", "second-project")[0]
    with MemoryClient(api_key=other_key, host=srv.url) as client:
        client.add("Otto's memory stays where it is", user_id="otto", infer=False, async_mode=False)
    with MemoryClient(api_key=source_key, host=srv.url) as client:
        first = client.add("I drive an old Volvo", user_id="ana", infer=False, async_mode=False,
                           metadata={"topic": "cars"})  # fmt: skip
        client.add("Keep answers short", agent_id="concise-bot", infer=False, async_mode=False)
        client.update(first["results"][0]["id"], text="I drive a red Volvo")
        listed = client.get_all(filters={"user_id": "ana"})
    report, seen = asyncio.run(import_from_server(srv, source_key, tmp_path / "local.db"))
    assert report.as_dict() == {"imported": 2, "skipped": 0, "conflicts": []}
    before = listed["results"] if isinstance(listed, dict) else listed
    after = seen["ana"]["results"]
    keys = ("id", "memory", "metadata", "user_id", "created_at", "updated_at")
    assert [{k: m[k] for k in keys} for m in after] == [{k: m[k] for k in keys} for m in before]
    assert after[0]["memory"] == "I drive a red Volvo" and after[0]["metadata"] == {"topic": "cars"}
    assert seen["other"]["total"] == 0
    assert [h["event"] for h in seen["history"]] == ["ADD", "UPDATE"]
    assert seen["found"]["results"][0]["id"] == first["results"][0]["id"]
