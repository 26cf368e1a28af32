"""``engram mcp``: the MCP server over stdio, on the embedded store (or ``ENGRAM_DATABASE_URL``)."""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context

from engram.errors import ConfigError
from engram.mcp.backend import Caller, MemoryBackend
from engram.mcp.tools import ToolNames, build_server
from engram.memory import AsyncMemory

logger = logging.getLogger("engram.mcp")


def default_user(explicit: str | None = None) -> str:
    """``--user``, else ``ENGRAM_USER_ID``, else the OS user name."""
    if explicit:
        return explicit
    env = os.environ.get("ENGRAM_USER_ID", "").strip()
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        return "default"


def load_config(path: Path | None) -> dict[str, Any] | None:
    """A MemoryConfig dict from a JSON file (``--config``), or None for the defaults."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"--config {path}: {e}", details={"field": "config"}) from e
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object", details={"field": "config"})
    return data


async def serve_stdio(caller: Caller, memory: AsyncMemory, *, tool_names: ToolNames = "mem0") -> None:
    """Serve until stdin closes, then close ``memory``."""
    backend = MemoryBackend(memory)

    async def resolve(_: Context) -> tuple[MemoryBackend, Caller]:
        return backend, caller

    server = build_server(resolve, tool_names)
    logger.info("engram mcp: stdio, default scope %s, tools %s", caller.defaults, tool_names)
    try:
        await server.run_stdio_async()
    finally:
        await memory.close()


def configure_logging(level: str = "WARNING") -> None:
    """Logs go to stderr only: stdout carries nothing but protocol messages."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
