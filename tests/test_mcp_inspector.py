"""A second, independent MCP client: the npm @modelcontextprotocol/inspector in CLI mode, both transports."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("mcp")

sys.path.insert(0, str(Path(__file__).parent / "server"))
from mcphelpers import ENGRAM, fake_config, inspector, stdio_env
from srvhelpers import ServerProcess, client_env, make_key

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("npm") is None, reason="the MCP Inspector needs node and npm"),
]


def answer_of(result: dict[str, object]) -> dict[str, object]:
    assert result.get("isError") is False, result
    content = result["content"]
    assert isinstance(content, list)
    parsed: dict[str, object] = json.loads(content[0]["text"])
    return parsed


def test_inspector_over_stdio(tmp_path: Path) -> None:
    env = stdio_env(tmp_path)
    server = ["--", ENGRAM, "mcp", "--config", str(fake_config(tmp_path)), "--user", "erin"]
    tools = inspector(["--method", "tools/list", *server], env, tmp_path)
    assert {"add_memory", "search_memories"} <= {t["name"] for t in tools["tools"]}
    added = inspector(
        [
            "--tool-arg",
            "text=Erin rides a red bicycle",
            "infer=false",
            "--method",
            "tools/call",
            "--tool-name",
            "add_memory",
            *server,
        ],
        env,
        tmp_path,
    )
    memory_id = answer_of(added)["results"][0]["id"]  # type: ignore[index]
    found = inspector(
        ["--tool-arg", "query=bicycle", "--method", "tools/call", "--tool-name", "search_memories", *server],
        env,
        tmp_path,
    )
    assert answer_of(found)["results"][0]["id"] == memory_id  # type: ignore[index]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("mcp-inspector-server")).start()
    yield server
    server.stop()


def test_inspector_over_http(srv: ServerProcess, tmp_path: Path) -> None:
    key = make_key(srv.state_path, "acme", "inspected")[0]
    env = client_env(tmp_path)
    target = [
        srv.url + "/mcp",
        "--transport",
        "http",
        "--header",
        f"Authorization: Token {key}",
        "X-Engram-User-Id: frank",
    ]
    tools = inspector([*target, "--method", "tools/list"], env, tmp_path)
    assert {"add_memory", "search_memories"} <= {t["name"] for t in tools["tools"]}
    added = inspector(
        [
            *target,
            "--method",
            "tools/call",
            "--tool-name",
            "add_memory",
            "--tool-arg",
            "text=Frank collects vinyl records",
            "infer=false",
        ],
        env,
        tmp_path,
    )
    memory_id = answer_of(added)["results"][0]["id"]  # type: ignore[index]
    found = inspector(
        [*target, "--method", "tools/call", "--tool-name", "search_memories", "--tool-arg", "query=vinyl"],
        env,
        tmp_path,
    )
    hit = answer_of(found)["results"][0]  # type: ignore[index]
    assert hit["id"] == memory_id and hit["user_id"] == "frank"
