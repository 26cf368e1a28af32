"""``engram mcp config <client>``: each MCP client's configuration for Engram, printed or merged in.

Stdio entries run ``engram mcp``; HTTP entries point at ``engram serve``'s ``/mcp`` with an API key.
Writing merges one ``engram`` entry into the client's JSON file after copying it to ``<file>.bak``;
every other server in the file is kept as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engram.errors import ConfigError

ClientName = Literal["claude-code", "cursor", "claude-desktop", "vscode"]
CLIENTS: tuple[str, ...] = ("claude-code", "cursor", "claude-desktop", "vscode")
SERVER_NAME = "engram"


@dataclass(frozen=True)
class Target:
    """How one client is configured: the file, the key holding servers, and the entry."""

    path: Path
    servers_key: str
    entry: dict[str, Any]


def engram_command(absolute: bool = False) -> str:
    """``engram`` when that is this install's script on PATH, else the script's absolute path.

    ``absolute`` always gives the path (when it exists): desktop apps do not see the shell's PATH.
    """
    script = Path(sys.executable).parent / "engram"
    if not script.exists():
        return "engram"
    found = shutil.which("engram")
    if not absolute and found and Path(found).resolve() == script.resolve():
        return "engram"
    return str(script)


def _auth_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}"}


def config_path(client: str, home: Path | None = None, cwd: Path | None = None) -> Path:
    """Where ``client`` reads its MCP servers (user level; VS Code: the workspace's .vscode/mcp.json)."""
    home = home or Path.home()
    if client == "claude-code":
        return home / ".claude.json"
    if client == "cursor":
        return home / ".cursor" / "mcp.json"
    if client == "vscode":
        return (cwd or Path.cwd()) / ".vscode" / "mcp.json"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
    if sys.platform == "win32":
        return (
            Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
            / "Claude"
            / "claude_desktop_config.json"
        )
    return home / ".config" / "Claude" / "claude_desktop_config.json"


def entry_for(client: str, args: list[str], http: str | None, key: str | None) -> dict[str, Any]:
    """The server entry ``client`` expects: command form for stdio, url + headers for HTTP."""
    if http is None:
        command = engram_command(absolute=client != "claude-code")
        entry: dict[str, Any] = {"command": command, "args": ["mcp", *args]}
        return {"type": "stdio", **entry} if client in ("claude-code", "vscode") else entry
    if not key:
        raise ConfigError(
            "--http needs --key (an API key from `engram keys create`)", details={"field": "key"}
        )
    if (
        client == "claude-desktop"
    ):  # Claude Desktop's config file only launches commands: bridge with mcp-remote
        return {
            "command": "npx",
            "args": ["-y", "mcp-remote", http, "--header", f"Authorization: Token {key}"],
        }
    entry = {"url": http, "headers": _auth_header(key)}
    return {"type": "http", **entry} if client in ("claude-code", "vscode") else entry


def target(
    client: str, args: list[str], http: str | None, key: str | None, home: Path | None = None
) -> Target:
    if client not in CLIENTS:
        raise ConfigError(
            f"unknown client {client!r}; one of {', '.join(CLIENTS)}", details={"field": "client"}
        )
    servers_key = "servers" if client == "vscode" else "mcpServers"
    return Target(config_path(client, home), servers_key, entry_for(client, args, http, key))


def command_line(client: str, tgt: Target, http: str | None, key: str | None) -> str | None:
    """The one-line setup command, for the clients that have one."""
    if client == "claude-code":
        if http is None:
            return " ".join(["claude mcp add", SERVER_NAME, "--", tgt.entry["command"], *tgt.entry["args"]])
        return f'claude mcp add --transport http {SERVER_NAME} {http} --header "Authorization: Token {key}"'
    if client == "vscode":
        payload = json.dumps({"name": SERVER_NAME, **tgt.entry}, separators=(",", ":"))
        return f"code --add-mcp '{payload}'"
    return None


def render(client: str, tgt: Target, http: str | None, key: str | None) -> str:
    """What ``engram mcp config`` prints: the command line (if any) and the JSON to merge."""
    snippet = json.dumps({tgt.servers_key: {SERVER_NAME: tgt.entry}}, indent=2)
    lines = []
    line = command_line(client, tgt, http, key)
    if line:
        lines += [line, "", "or add to " + str(tgt.path) + ":"]
    else:
        lines += ["Add to " + str(tgt.path) + ":"]
    return "\n".join([*lines, snippet])


def write(tgt: Target) -> Path | None:
    """Merge the entry into the file (creating it if needed); returns the backup path, if any."""
    data: dict[str, Any] = {}
    backup: Path | None = None
    if tgt.path.exists():
        text = tgt.path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"{tgt.path} is not valid JSON ({e}); not touching it") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{tgt.path} does not hold a JSON object; not touching it")
        backup = tgt.path.with_name(tgt.path.name + ".bak")
        shutil.copy2(tgt.path, backup)
    servers = data.get(tgt.servers_key)
    if servers is None:
        servers = data[tgt.servers_key] = {}
    if not isinstance(servers, dict):
        raise ConfigError(f"{tgt.path}: {tgt.servers_key!r} is not an object; not touching it")
    servers[SERVER_NAME] = tgt.entry
    tgt.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tgt.path.with_name(tgt.path.name + ".engram-tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, tgt.path)
    return backup
