"""`engram mcp` over stdio, spawned as a real subprocess and driven by the official MCP client."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("mcp")

import sys

sys.path.insert(0, str(Path(__file__).parent / "server"))
from mcphelpers import ENGRAM, call, fake_config, stdio_env, stdio_session

pytestmark = pytest.mark.slow

MEM0_TOOLS = {
    "add_memory",
    "search_memories",
    "get_memories",
    "get_memory",
    "update_memory",
    "delete_memory",
    "delete_all_memories",
    "list_entities",
    "delete_entities",
    "memory_history",
}
OPENMEMORY_TOOLS = {
    "add_memories",
    "search_memory",
    "list_memories",
    "delete_memories",
    "delete_all_memories",
}


async def test_stdio_tools_end_to_end(tmp_path: Path) -> None:
    args = ["mcp", "--config", str(fake_config(tmp_path)), "--user", "alice"]
    async with stdio_session(args, stdio_env(tmp_path)) as s:
        assert {t.name for t in (await s.list_tools()).tools} == MEM0_TOOLS

        err, added = await call(s, "add_memory", {"text": "I prefer window seats on flights", "infer": False})
        assert not err and added["results"][0]["event"] == "ADD"
        memory_id = added["results"][0]["id"]
        err, inferred = await call(
            s,
            "add_memory",
            {"messages": [{"role": "user", "content": "I'm vegetarian and I live in Lisbon."}]},
        )
        assert not err and inferred["results"], inferred

        err, found = await call(s, "search_memories", {"query": "window seat on a plane", "top_k": 3})
        assert not err
        top = found["results"][0]
        assert top["id"] == memory_id and top["user_id"] == "alice" and 0 < top["score"] <= 1
        assert set(top) <= {"id", "memory", "score", "user_id", "metadata", "created_at", "updated_at"}

        err, one = await call(s, "get_memory", {"memory_id": memory_id})
        assert not err and one["memory"] == "I prefer window seats on flights"
        err, changed = await call(
            s, "update_memory", {"memory_id": memory_id, "text": "I prefer aisle seats"}
        )
        assert not err and changed["memory"] == "I prefer aisle seats"
        err, history = await call(s, "memory_history", {"memory_id": memory_id})
        assert not err and [h["event"] for h in history["history"]] == ["ADD", "UPDATE"]
        assert history["sources"][0]["content"] == "I prefer window seats on flights"

        err, listed = await call(s, "get_memories", {"page_size": 50})
        assert not err and listed["total"] == 1 + len(inferred["results"])
        err, entities = await call(s, "list_entities")
        assert not err and entities["results"] == [
            {"type": "user", "name": "alice", "total_memories": listed["total"]}
        ]

        resource = await s.read_resource("engram://memories/alice")
        assert "I prefer aisle seats" in resource.contents[0].text
        prompt = await s.get_prompt("use_engram_memory")
        assert "search_memories" in prompt.messages[0].content.text

        err, _ = await call(s, "delete_memory", {"memory_id": memory_id})
        assert not err
        err, message = await call(s, "get_memory", {"memory_id": memory_id})
        assert err and "not found" in message

        err, message = await call(s, "delete_all_memories")
        assert err and "explicit scope" in message
        err, deleted = await call(s, "delete_all_memories", {"user_id": "alice"})
        assert not err and deleted["deleted"] == len(inferred["results"])


async def test_stdio_refusals_and_bad_arguments(tmp_path: Path) -> None:
    args = ["mcp", "--config", str(fake_config(tmp_path)), "--user", "alice", "--agent", "planner"]
    async with stdio_session(args, stdio_env(tmp_path)) as s:
        err, message = await call(s, "search_memories", {"query": "x", "user_id": "bob"})
        assert err and "'bob' is not allowed" in message and "--allow-any-user" in message
        err, message = await call(s, "get_memories", {"filters": {"user_id": {"in": ["alice", "bob"]}}})
        assert err and "not allowed" in message
        err, message = await call(s, "get_memory", {"memory_id": 5})
        assert err and "memory_id" in message
        err, message = await call(s, "search_memories", {"query": "x", "top_k": 0})
        assert err and "top_k" in message
        err, message = await call(s, "search_memories", {"query": "   "})
        assert err and "query must be a non-empty string" in message
        err, message = await call(s, "add_memory", {})
        assert err and "text" in message
        err, message = await call(s, "update_memory", {"memory_id": "nope", "text": "x"})
        assert err and "not found" in message
        err, message = await call(s, "get_memories", {"filters": {"created_at": {"between": 1}}})
        assert err and "filter" in message.lower()
        # the session survives every error above
        err, _ = await call(s, "add_memory", {"text": "Plans trips in spring", "infer": False})
        assert not err
        err, found = await call(s, "get_memories")
        assert not err and found["results"][0].get("agent_id") == "planner"


async def test_stdio_openmemory_names_and_any_user(tmp_path: Path) -> None:
    args = ["mcp", "--config", str(fake_config(tmp_path)), "--tool-names", "openmemory", "--allow-any-user"]
    env = {**stdio_env(tmp_path), "ENGRAM_USER_ID": "carol"}
    async with stdio_session(args, env) as s:
        assert {t.name for t in (await s.list_tools()).tools} == OPENMEMORY_TOOLS
        err, added = await call(s, "add_memories", {"text": "I play the cello"})
        assert not err and added["results"]
        err, found = await call(s, "search_memory", {"query": "cello"})
        assert not err and found["results"][0]["user_id"] == "carol"
        err, listed = await call(s, "list_memories")
        assert not err and listed["total"] == len(added["results"])
        ids = [r["id"] for r in added["results"]]
        err, _ = await call(s, "delete_memories", {"memory_ids": ids})
        assert not err
        err, listed = await call(s, "list_memories")
        assert not err and listed["total"] == 0


def test_stdout_carries_only_protocol(tmp_path: Path) -> None:
    """Raw JSON-RPC over the pipes: every stdout line is a protocol message; logs are on stderr."""
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "add_memory", "arguments": {"text": "I like green tea", "infer": False}},
        },
    ]
    proc = subprocess.Popen(
        [ENGRAM, "mcp", "--config", str(fake_config(tmp_path)), "--log-level", "DEBUG"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stdio_env(tmp_path),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
    proc.stdin.flush()
    lines = [json.loads(proc.stdout.readline()) for _ in range(2)]  # a stray print would fail here
    proc.stdin.close()
    rest, stderr = proc.stdout.read(), proc.stderr.read() if proc.stderr else ""
    assert proc.wait(60) == 0
    assert rest == ""
    assert [m["id"] for m in lines] == [1, 2] and all(m["jsonrpc"] == "2.0" for m in lines)
    assert "I like green tea" in lines[1]["result"]["content"][0]["text"]
    assert "DEBUG" in stderr  # the logs went to stderr


async def test_the_printed_claude_code_command_works(tmp_path: Path) -> None:
    """`engram mcp config claude-code` prints `claude mcp add engram -- <cmd>`: <cmd> serves, on the
    defaults (bundled MiniLM, embedded store), with no other setup."""
    env = {**stdio_env(tmp_path), "PATH": f"{Path(ENGRAM).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    printed = subprocess.run(
        [ENGRAM, "mcp", "config", "claude-code"], capture_output=True, text=True, env=env, timeout=60
    ).stdout.splitlines()[0]
    assert printed == "claude mcp add engram -- engram mcp"
    command, *args = shlex.split(printed.split(" -- ", 1)[1])
    async with stdio_session(args, env, command=command) as s:
        err, added = await call(s, "add_memory", {"text": "I am allergic to cats", "infer": False})
        assert not err
        err, found = await call(s, "search_memories", {"query": "which pets cause allergies?"})
        assert not err and found["results"][0]["id"] == added["results"][0]["id"]
        assert found["results"][0]["user_id"]  # the OS user (or ENGRAM_USER_ID)


def test_a_bad_config_is_named_on_stderr(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{"embedder": {"provider": "nope"}}')
    proc = subprocess.run(
        [ENGRAM, "mcp", "--config", str(config)],
        capture_output=True,
        text=True,
        env=stdio_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Unknown embedder provider 'nope'" in " ".join(proc.stderr.split())
