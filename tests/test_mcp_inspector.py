"""A second, independent MCP client: the npm @modelcontextprotocol/inspector in CLI mode, both transports."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

sys.path.insert(0, str(Path(__file__).parent / "server"))
from mcphelpers import ENGRAM, fake_config, inspector, stdio_env
from srvhelpers import ServerProcess, client_env, make_key

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("npm") is None, reason="the MCP Inspector needs node and npm"),
]


def answer_of(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is False, result
    parsed: dict[str, Any] = json.loads(result["content"][0]["text"])
    return parsed


def list_add_search(run: Callable[[list[str]], Any], text: str, query: str) -> dict[str, Any]:
    """tools/list, then add_memory(text) and search_memories(query): the best hit, which is the add."""
    tools = run(["--method", "tools/list"])
    assert {"add_memory", "search_memories"} <= {t["name"] for t in tools["tools"]}
    call = ["--method", "tools/call", "--tool-name"]  # after the variadic --tool-arg, which stops at "--"
    added = answer_of(run(["--tool-arg", f"text={text}", "infer=false", *call, "add_memory"]))
    found = answer_of(run(["--tool-arg", f"query={query}", *call, "search_memories"]))
    hit: dict[str, Any] = found["results"][0]
    assert hit["id"] == added["results"][0]["id"] and hit["memory"] == text
    return hit


def test_inspector_over_stdio(tmp_path: Path) -> None:
    server = ["--", ENGRAM, "mcp", "--config", str(fake_config(tmp_path)), "--user", "erin"]
    # The server command goes last, after "--" (its --config must not be read as the Inspector's).
    hit = list_add_search(
        lambda method: inspector([*method, *server], stdio_env(tmp_path), tmp_path),
        "Erin rides a red bicycle",
        "bicycle",
    )
    assert hit["user_id"] == "erin"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("mcp-inspector-server")).start()
    yield server
    server.stop()


def test_inspector_over_http(srv: ServerProcess, tmp_path: Path) -> None:
    key = make_key(srv.state_path, "acme", "inspected")[0]
    target = [srv.url + "/mcp", "--transport", "http", "--header", f"Authorization: Token {key}"]
    target.append("X-Engram-User-Id: frank")
    hit = list_add_search(
        lambda method: inspector([*target, *method], client_env(tmp_path), tmp_path),
        "Frank collects vinyl records",
        "vinyl",
    )
    assert hit["user_id"] == "frank"
