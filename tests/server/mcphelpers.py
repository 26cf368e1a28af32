"""Helpers for the MCP tests: the `engram mcp` command, a client session, the npm MCP Inspector."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from srvhelpers import npm_package

# Checked with `npm view @modelcontextprotocol/inspector`: the 0.x line has the --cli mode used here.
INSPECTOR_VERSION = "0.22.0"
ENGRAM = str(Path(sys.executable).parent / "engram")
FAKE_CONFIG = {"embedder": {"provider": "fake"}, "llm_from_env": False}


def stdio_env(tmp: Path) -> dict[str, str]:
    """Environment of an `engram mcp` child: its own ENGRAM_HOME and HOME, no provider keys."""
    env = dict(os.environ)
    env.update({"ENGRAM_HOME": str(tmp / "engram-home"), "HOME": str(tmp)})
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ENGRAM_DATABASE_URL", "ENGRAM_USER_ID"):
        env.pop(var, None)
    return env


def fake_config(tmp: Path) -> Path:
    """A MemoryConfig file for `engram mcp --config`: the fake embedder, the offline extractor."""
    path = tmp / "engram-mcp.json"
    path.write_text(json.dumps(FAKE_CONFIG))
    return path


@contextlib.asynccontextmanager
async def stdio_session(args: list[str], env: dict[str, str], command: str = ENGRAM) -> AsyncIterator[Any]:
    """An initialized official-SDK client session with `command args` spawned over stdio."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=command, args=args, env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def http_session(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """An initialized official-SDK client session over streamable HTTP."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


async def call(session: Any, tool: str, args: dict[str, Any] | None = None) -> tuple[bool, Any]:
    """(is_error, the answer parsed as JSON, or its text when it is an error message)."""
    result = await session.call_tool(tool, args or {})
    text = result.content[0].text if result.content else ""
    if result.is_error:
        return True, text
    return False, json.loads(text)


def mcp_inspector() -> Path:
    """The `mcp-inspector` script of @modelcontextprotocol/inspector, installed into the test cache."""
    project = npm_package("@modelcontextprotocol/inspector", INSPECTOR_VERSION, "mcp-inspector")
    return project / "node_modules" / ".bin" / "mcp-inspector"


def inspector(args: list[str], env: dict[str, str], cwd: Path) -> Any:
    """Run the Inspector in CLI mode; its stdout is the JSON answer."""
    proc = subprocess.run(
        [str(mcp_inspector()), "--cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )
    assert proc.returncode == 0, f"inspector failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)
