"""The complete command line (``engram.cli.main`` in-process, one real subprocess for the script): JSON
output, exit codes, export/import, backups of a store in use, doctor, and clean help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engram.cli import main

ENGRAM = [sys.executable, "-m", "engram.cli"]


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _capture(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    global _capsys, _monkeypatch
    _capsys, _monkeypatch = capsys, monkeypatch
    monkeypatch.setenv("COLUMNS", "200")
    yield


_capsys: pytest.CaptureFixture[str]
_monkeypatch: pytest.MonkeyPatch


def engram(*args: str, home: Path, **env: str) -> Done:
    """``engram ARGS`` in this process, with ENGRAM_HOME=home and ``env``."""
    _capsys.readouterr()
    with _monkeypatch.context() as patch:
        patch.setenv("ENGRAM_HOME", str(home))
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    captured = _capsys.readouterr()
    return Done(code, captured.out, captured.err)


def ok_json(*args: str, home: Path) -> Any:
    done = engram(*args, "--json", home=home)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_memory_commands_with_json_and_exit_codes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    added = ok_json("add", "I prefer window seats", "--user", "bob", "--raw", home=home)
    memory_id = added["results"][0]["id"]
    ok_json("add", "Bob's daughter is called Ada", "--user", "bob", "--raw", home=home)
    assert ok_json("get", memory_id, home=home)["memory"] == "I prefer window seats"
    updated = ok_json(
        "update", memory_id, "--text", "I prefer aisle seats", "--metadata", '{"k": 1}', home=home
    )
    assert (updated["memory"], updated["metadata"]) == ("I prefer aisle seats", {"k": 1})
    assert [h["event"] for h in ok_json("history", memory_id, home=home)] == ["ADD", "UPDATE"]
    assert ok_json("sources", memory_id, home=home)[0]["content"] == "I prefer window seats"
    assert ok_json("users", home=home)["results"] == [{"type": "user", "id": "bob", "memories": 2}]
    stats = ok_json("stats", home=home)
    assert stats["memories"] == {"current": 2, "superseded": 0, "expired": 0} and stats["users"] == 1

    missing = engram("get", "no-such-id", home=home)
    assert missing.returncode == 3 and "not found" in missing.stderr
    assert engram("history", "no-such-id", home=home).returncode == 3
    assert engram("delete", "no-such-id", home=home).returncode == 3
    assert engram("update", memory_id, home=home).returncode == 2  # nothing to change
    assert engram("get", home=home).returncode == 2  # click's usage error
    unscoped = engram("delete-all", home=home)
    assert unscoped.returncode == 2 and "needs a scope" in unscoped.stderr
    unconfirmed = engram("delete-all", "--user", "bob", home=home)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert ok_json("get", memory_id, home=home)["memory"] == "I prefer aisle seats"
    assert ok_json("delete", memory_id, home=home)["id"] == memory_id
    assert ok_json("delete-all", "--user", "bob", "--yes", home=home)["deleted"] == 1
    assert ok_json("users", home=home)["results"] == []


def test_export_import_through_the_cli(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    ok_json(
        "add", "Alice is vegetarian", "--user", "alice", "--raw", "--metadata", '{"diet": true}', home=source
    )
    ok_json("add", "Alice lives in Lyon", "--user", "alice", "--raw", home=source)
    dump = tmp_path / "alice.jsonl"
    exported = engram("export", "-o", str(dump), "--filters", '{"user_id": "alice"}', home=source)
    assert exported.returncode == 0 and "exported 2 memories" in exported.stderr
    piped = engram("export", home=source)  # to stdout: the same lines, no progress output
    assert piped.stdout.splitlines()[1:] == dump.read_text().splitlines()[1:]
    assert ok_json("import", str(dump), home=target) == {"imported": 2, "skipped": 0, "conflicts": []}
    assert ok_json("import", str(dump), home=target) == {"imported": 0, "skipped": 2, "conflicts": []}
    again = engram("export", home=target)
    assert again.stdout.splitlines()[1:] == dump.read_text().splitlines()[1:]

    lines = dump.read_text().splitlines()
    changed = json.loads(lines[1])
    changed["memory"] = "Alice eats fish"
    (tmp_path / "changed.jsonl").write_text(lines[0] + "\n" + json.dumps(changed) + "\n")
    conflict = engram("import", str(tmp_path / "changed.jsonl"), home=target)
    assert conflict.returncode == 4 and f"conflict {changed['id']}" in conflict.stdout
    assert ok_json("get", changed["id"], home=target)["memory"] == "Alice is vegetarian"
    assert ok_json("import", str(dump), "--namespace", "other", home=tmp_path / "third")["imported"] == 2
    bad = engram("import", str(tmp_path / "missing.jsonl"), home=target)
    assert bad.returncode == 2 and "cannot read" in bad.stderr
    assert engram("import", "mem0", home=target).returncode == 2  # needs --config or --qdrant-path
    assert engram("import", "mem0-platform", home=target, MEM0_API_KEY="").returncode == 2


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from engram import AsyncMemory
    from engram.stores.sqlite import SQLiteStore
    from engram.testing import FakeEmbedder

    async def main():
        async with AsyncMemory(store=SQLiteStore(path=sys.argv[1]), embedder=FakeEmbedder()) as m:
            await m.add("warm-up", user_id="w", infer=False)
            print("ready", flush=True)
            i = 0
            while True:
                await m.add([{"role": "user", "content": f"fact number {i}"}], user_id="w", infer=False)
                i += 1

    asyncio.run(main())
    """
)


def test_backup_of_a_store_being_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home / "engram.db")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        result = ok_json("backup", str(tmp_path / "copy.db"), home=home)
    finally:
        writer.terminate()
        writer.wait(10)
    assert result["memories"] >= 1
    check = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import asyncio
            from engram import AsyncMemory
            from engram.stores.sqlite import SQLiteStore
            from engram.testing import FakeEmbedder
            async def main():
                async with AsyncMemory(store=SQLiteStore(path={str(tmp_path / 'copy.db')!r}),
                                       embedder=FakeEmbedder()) as m:
                    print((await m.get_all(user_id="w", top_k=100000))["total"])
            asyncio.run(main())
        """)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert int(check.stdout) == result["memories"]
    again = engram("backup", str(tmp_path / "copy.db"), home=home)
    assert again.returncode == 2 and "exists" in again.stderr


def test_doctor_reports_and_says_what_to_fix(tmp_path: Path) -> None:
    report = ok_json("doctor", home=tmp_path / "home")
    checks = {c["check"]: c for c in report["checks"]}
    assert report["ok"] is True
    assert checks["store"]["status"] == "ok" and checks["migrations"]["status"] == "ok"
    assert checks["embedder"]["status"] == "ok" and "384 dimensions" in checks["embedder"]["detail"]
    assert checks["llm"]["status"] == "warn" and "OPENAI_API_KEY" in checks["llm"]["fix"]
    broken = engram("doctor", "--json", home=tmp_path / "home", ENGRAM_SERVER_PORT="not-a-port")
    assert broken.returncode == 1
    failed = {c["check"]: c for c in json.loads(broken.stdout)["checks"] if c["status"] == "fail"}
    assert set(failed) == {"server settings"} and failed["server settings"]["fix"]


def test_doctor_makes_one_tiny_llm_call(tmp_path: Path) -> None:
    from engram import AsyncMemory
    from engram.errors import ProviderError
    from engram.stores.sqlite import SQLiteStore
    from engram.testing import FakeEmbedder, ScriptedLLM

    llm = ScriptedLLM(["OK", ProviderError("401 invalid api key", provider="scripted")])

    def scripted(namespace: str | None = None, project: str | None = None) -> AsyncMemory:
        return AsyncMemory(store=SQLiteStore(path=tmp_path / "s.db"), embedder=FakeEmbedder(), llm=llm)

    _monkeypatch.setattr("engram.cli.doctor.engine", scripted)
    first = {c["check"]: c for c in ok_json("doctor", home=tmp_path)["checks"]}
    assert first["llm"]["status"] == "ok" and "'OK'" in first["llm"]["detail"]
    second = engram("doctor", "--json", home=tmp_path)
    assert second.returncode == 1
    failed = {c["check"]: c for c in json.loads(second.stdout)["checks"] if c["status"] == "fail"}
    assert "401 invalid api key" in failed["llm"]["detail"] and "API key" in failed["llm"]["fix"]
    assert len(llm.calls) == 2


@pytest.mark.parametrize(
    "command", [["import"], ["export"], ["delete-all"], ["doctor"], ["add"], ["keys", "create"]]
)
def test_help_has_no_type_markers(command: list[str], tmp_path: Path) -> None:
    shown = engram(*command, "--help", home=tmp_path)
    assert shown.returncode == 0
    assert "<bool>" not in shown.stdout and "<str>" not in shown.stdout


def test_the_engram_script_help_is_clean(tmp_path: Path) -> None:
    env = {**os.environ, "ENGRAM_HOME": str(tmp_path), "COLUMNS": "200"}
    shown = subprocess.run([*ENGRAM, "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0
    assert "<bool>" not in shown.stdout and "<str>" not in shown.stdout
    for command in ("get", "update", "delete-all", "history", "sources", "users", "stats", "export", "import",
                    "backup", "doctor"):  # fmt: skip
        assert f" {command} " in shown.stdout


def test_import_into_a_server_project(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent / "server"))
    from srvhelpers import make_key

    source, server_home = tmp_path / "source", tmp_path / "server"
    memory_id = ok_json("add", "Eve likes jazz", "--user", "eve", "--raw", home=source)["results"][0]["id"]
    assert engram("export", "-o", str(tmp_path / "eve.jsonl"), home=source).returncode == 0
    server_home.mkdir()
    make_key(server_home / "server.db", "acme", "app")
    imported = ok_json("import", str(tmp_path / "eve.jsonl"), "--project", "acme/app", home=server_home)
    assert imported["imported"] == 1
    assert ok_json("get", memory_id, "--project", "acme/app", home=server_home)["memory"] == "Eve likes jazz"
    assert engram("get", memory_id, home=server_home).returncode == 3  # not in the default namespace
    unknown = engram("stats", "--project", "acme/nope", home=server_home)
    assert unknown.returncode == 2 and "matches 0 projects" in unknown.stderr


def test_keys_commands_have_json(tmp_path: Path) -> None:
    created = ok_json("keys", "create", "--org", "acme", "--project", "web", home=tmp_path)
    assert created["key"] and created["project_id"]
    listed = ok_json("keys", "list", home=tmp_path)
    assert [(k["project"], k["state"]) for k in listed] == [("acme/web", "active")]
    assert ok_json("keys", "projects", home=tmp_path)[0]["project_id"] == created["project_id"]
    assert (
        ok_json("keys", "set-limit", created["project_id"], "60", home=tmp_path)["rate_limit_per_minute"]
        == 60
    )
    assert ok_json("keys", "revoke", listed[0]["id"], home=tmp_path) == {"revoked": listed[0]["id"]}
    assert engram("keys", "revoke", "no-such-key", home=tmp_path).returncode == 3
