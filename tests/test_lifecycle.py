"""Clean lifecycles: silent exit without close(), close() twice, reads while another process writes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = """
import asyncio, os, sys
from engram import AsyncMemory, Memory

config = {"embedder": {"provider": "fake"}, "llm_from_env": False}
if os.environ.get("ENGRAM_SCRIPT_SCHEMA"):
    store = {"url": os.environ["ENGRAM_DATABASE_URL"], "schema_name": os.environ["ENGRAM_SCRIPT_SCHEMA"]}
    config["store"] = {"provider": "postgres", "config": store}
if sys.argv[1] == "sync":
    m = Memory(config)
    m.add("I like green tea", user_id="u", infer=False)
    assert m.search("tea", user_id="u")["results"]
else:
    async def main():
        m = AsyncMemory(config)
        await m.add("I like green tea", user_id="u", infer=False)
        assert (await m.search("tea", user_id="u"))["results"]
    asyncio.run(main())
print("done")
"""


def run_script(env: dict[str, str], mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_exit_without_close_is_silent(
    backend: str, mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {**os.environ, "ENGRAM_HOME": str(tmp_path / "home")}
    if backend == "postgres":
        env["ENGRAM_DATABASE_URL"] = request.getfixturevalue("pg_url")
        schema = request.getfixturevalue("pg_schema")
        env["ENGRAM_SCRIPT_SCHEMA"] = schema
    done = run_script(env, mode)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert done.stderr == ""


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    from engram import Memory

    m = Memory(
        {
            "embedder": {"provider": "fake"},
            "store": {"provider": "sqlite", "config": {"path": str(tmp_path / "m.db")}},
        }
    )
    m.add("hello there", user_id="u", infer=False)
    m.close()
    m.close()


async def test_async_close_twice_is_harmless(tmp_path: Path) -> None:
    from engram import AsyncMemory

    m = AsyncMemory(
        {
            "embedder": {"provider": "fake"},
            "store": {"provider": "sqlite", "config": {"path": str(tmp_path / "m.db")}},
        }
    )
    await m.add("hello there", user_id="u", infer=False)
    await m.close()
    await m.close()


def test_a_fresh_memory_reads_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """Opening a store that needs no migration takes no write lock."""
    from engram import Memory

    config = {
        "embedder": {"provider": "fake"},
        "store": {"provider": "sqlite", "config": {"path": str(tmp_path / "m.db")}},
    }
    with Memory(config) as first:
        first.add("I like green tea", user_id="u", infer=False)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sqlite3, sys, time
                conn = sqlite3.connect({str(tmp_path / "m.db")!r}, isolation_level=None)
                conn.execute("BEGIN IMMEDIATE")
                print("locked", flush=True)
                sys.stdin.readline()
                conn.execute("ROLLBACK")
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        check = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, json; from engram import Memory; m = Memory(json.loads(sys.argv[1])); "
                "print(len(m.search('tea', user_id='u')['results'])); m.close()",
                __import__("json").dumps(
                    {
                        **config,
                        "store": {
                            "provider": "sqlite",
                            "config": {"path": str(tmp_path / "m.db"), "busy_timeout_ms": 2000},
                        },
                    }
                ),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
        assert check.stdout.strip() == "1"
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(10)
    assert sqlite3.connect(tmp_path / "m.db").execute("SELECT count(*) FROM memories").fetchone()[0] == 1
