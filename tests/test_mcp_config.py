"""`engram mcp config <client>`: printed setup, and --write merging into a temp HOME's config files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engram.mcp.clients import config_path

ENGRAM = str(Path(sys.executable).parent / "engram")


def run_config(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "APPDATA": str(home / "AppData")}
    return subprocess.run(
        [ENGRAM, "mcp", "config", *args], capture_output=True, text=True, env=env, cwd=home, timeout=60
    )


def test_claude_code_prints_the_one_line_command(tmp_path: Path) -> None:
    out = run_config(tmp_path, "claude-code")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("claude mcp add engram -- ") and first.endswith("engram mcp")
    http = run_config(tmp_path, "claude-code", "--http", "http://127.0.0.1:8000/mcp", "--key", "eg-k")
    url = "http://127.0.0.1:8000/mcp"
    expected = f'claude mcp add --transport http engram {url} --header "Authorization: Token eg-k"'
    assert http.stdout.splitlines()[0] == expected
    assert not (tmp_path / ".claude.json").exists()  # printing writes nothing


@pytest.mark.parametrize("client", ["claude-code", "cursor", "claude-desktop", "vscode"])
def test_write_merges_and_keeps_other_servers(tmp_path: Path, client: str) -> None:
    path = config_path(client, home=tmp_path, cwd=tmp_path)
    servers_key = "servers" if client == "vscode" else "mcpServers"
    path.parent.mkdir(parents=True, exist_ok=True)
    before = {"theme": "dark", servers_key: {"github": {"command": "gh-mcp", "args": []}}}
    path.write_text(json.dumps(before))

    out = run_config(tmp_path, client, "--write")
    assert out.returncode == 0, out.stderr
    after = json.loads(path.read_text())
    assert after["theme"] == "dark" and after[servers_key]["github"] == before[servers_key]["github"]
    entry = after[servers_key]["engram"]
    assert entry["command"].endswith("engram") and entry["args"] == ["mcp"]
    assert json.loads(path.with_name(path.name + ".bak").read_text()) == before

    out = run_config(tmp_path, client, "--write", "--http", "http://h:8000/mcp", "--key", "eg-k")
    assert out.returncode == 0, out.stderr
    entry = json.loads(path.read_text())[servers_key]["engram"]
    flat = json.dumps(entry)
    assert "http://h:8000/mcp" in flat and "Token eg-k" in flat
    assert json.loads(path.read_text())[servers_key]["github"] == before[servers_key]["github"]


def test_write_creates_a_missing_file_and_refuses_a_broken_one(tmp_path: Path) -> None:
    path = config_path("cursor", home=tmp_path)
    assert run_config(tmp_path, "cursor", "--write").returncode == 0
    assert set(json.loads(path.read_text())["mcpServers"]) == {"engram"}
    path.write_text("{not json")
    out = run_config(tmp_path, "cursor", "--write")
    assert out.returncode != 0 and "not valid JSON" in out.stdout + out.stderr
    assert path.read_text() == "{not json"


def test_bad_client_and_missing_key_are_named(tmp_path: Path) -> None:
    out = run_config(tmp_path, "emacs")
    assert out.returncode != 0 and "unknown client 'emacs'" in out.stdout + out.stderr
    out = run_config(tmp_path, "cursor", "--http", "http://h/mcp")
    assert out.returncode != 0 and "--key" in out.stdout + out.stderr
