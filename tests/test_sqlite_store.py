"""The embedded store for real: files, threads, processes, migrations, embedder checks, atomicity."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from engram import AsyncMemory, Memory
from engram.embedders.fake import FakeEmbedder
from engram.errors import EmbedderMismatchError, StoreError
from engram.stores.sqlite import SQLiteStore
from engram.types import NewMemory, Scope, StoredMessage, text_hash, utcnow

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_default_store_lives_under_engram_home(engram_home: Path) -> None:
    with Memory(embedder=FakeEmbedder()) as m:
        m.add("hello there", user_id="u", infer=False)
    assert (engram_home / "engram.db").exists()
    with sqlite3.connect(engram_home / "engram.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version, name FROM schema_migrations").fetchall() == [
            (1, "initial"),
            (2, "entity links and profiles"),
            (3, "change feed"),
        ]


def test_persistence_across_processes(engram_home: Path) -> None:
    env = {"ENGRAM_HOME": str(engram_home)}
    out = run_python(
        """
        from engram import Memory
        from engram.embedders.fake import FakeEmbedder
        with Memory(embedder=FakeEmbedder()) as m:
            r = m.add("the launch code is 1234", user_id="u", infer=False)
            print(r["results"][0]["id"])
        """,
        env,
    )
    memory_id = out.strip()
    out = run_python(
        f"""
        from engram import Memory
        from engram.embedders.fake import FakeEmbedder
        with Memory(embedder=FakeEmbedder()) as m:
            print(m.get({memory_id!r})["memory"])
            print(m.search("launch code", user_id="u")["results"][0]["id"])
        """,
        env,
    )
    assert out.split("\n")[:2] == ["the launch code is 1234", memory_id]


def test_threads_adding_at_once(mem: Memory) -> None:
    ids: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(100):
                r = mem.add(f"thread {t} fact number {i}", user_id="u", infer=False)
                with lock:
                    ids.append(r["results"][0]["id"])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 800
    assert mem.get_all(user_id="u", top_k=10_000)["total"] == 800
    assert all(mem.get(i) is not None for i in ids[::7])
    assert mem.search("thread 3 fact number 42", user_id="u", top_k=1)["results"][0]["memory"] == (
        "thread 3 fact number 42"
    )


def test_processes_adding_at_once(engram_home: Path) -> None:
    code = """
        import sys
        from engram import Memory
        from engram.embedders.fake import FakeEmbedder
        with Memory(embedder=FakeEmbedder()) as m:
            for i in range(100):
                m.add(f"process {sys.argv[1]} fact {i}", user_id="u", infer=False)
    """
    env = {**os.environ, "ENGRAM_HOME": str(engram_home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(p)],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    with Memory(embedder=FakeEmbedder()) as m:
        listed = m.get_all(user_id="u", top_k=1000)
        assert listed["total"] == 200
        assert {r["memory"] for r in listed["results"]} == {
            f"process {p} fact {i}" for p in range(2) for i in range(100)
        }
        assert (
            m.search("process 1 fact 77", user_id="u", top_k=1)["results"][0]["memory"] == "process 1 fact 77"
        )


def test_embedder_mismatch_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with Memory(store=SQLiteStore(path=path), embedder=FakeEmbedder(dim=64)) as m:
        m.add("x", user_id="u", infer=False)
    with (
        Memory(store=SQLiteStore(path=path), embedder=FakeEmbedder(dim=32)) as m,
        pytest.raises(EmbedderMismatchError) as info,
    ):
        m.search("x", user_id="u")
    message = str(info.value)
    assert "fake" in message and "64" in message and "32" in message
    assert "reset()" in message and "ENGRAM_HOME" in message


async def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(path=tmp_path / "a.db")
    embedder = FakeEmbedder()
    await store.open(embedder.info)
    scope = Scope(user_id="u")
    now = utcnow()
    message = StoredMessage("m1", scope, "user", "one", None, now, now)
    good = NewMemory(
        "a", "one", text_hash("one"), scope, (await embedder.embed(["one"]))[0], source_message_ids=["m1"]
    )
    bad = NewMemory("b", "two", text_hash("two"), scope, np.zeros(3, dtype=np.float32))
    with pytest.raises(StoreError):
        await store.add("default", [message], [good, bad])
    assert await store.get("default", "a") is None
    assert await store.recent_messages("default", scope, 10) == []
    assert await store.history("default", "a") == []
    await store.close()


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    code = """
        import sys
        events = []
        def audit(event, args):
            if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo"):
                events.append(event)
            elif event == "open" and isinstance(args[0], str) and args[1] not in (None, "r", "rb"):
                if not args[0].endswith((".pyc", ".pyc.tmp")) and "__pycache__" not in args[0]:
                    events.append(f"open {args[0]} {args[1]}")
        sys.addaudithook(audit)
        import engram
        engram.Memory, engram.AsyncMemory, engram.MemoryConfig
        import engram.cli
        heavy = [m for m in ("onnxruntime", "tokenizers", "openai", "anthropic", "fastapi", "psycopg")
                 if m in sys.modules]
        print("events:", events, "heavy:", heavy)
    """
    env = {"HOME": str(home), "ENGRAM_HOME": str(home / "engram"), "XDG_CACHE_HOME": str(home / "cache")}
    out = run_python(code, env)
    assert out.strip() == "events: [] heavy: []"
    assert list(home.iterdir()) == []


def test_store_records_migrations_and_embedder(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with Memory(store=SQLiteStore(path=path), embedder=FakeEmbedder()) as m:
        m.add("x", user_id="u", infer=False)
    with sqlite3.connect(path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert meta["embedder"] == FakeEmbedder().info.name and meta["dim"] == str(FakeEmbedder().info.dim)
    assert json.loads(json.dumps(meta))  # plain text values


async def test_search_sees_other_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    a = AsyncMemory(store=SQLiteStore(path=path), embedder=FakeEmbedder())
    b = AsyncMemory(store=SQLiteStore(path=path), embedder=FakeEmbedder())
    await a.add("first fact about kiwis", user_id="u", infer=False)
    assert len((await b.search("kiwis", user_id="u"))["results"]) == 1  # b caches the scope
    await a.add("second fact about kiwis", user_id="u", infer=False)
    mid = (await a.add("third fact about kiwis", user_id="u", infer=False))["results"][0]["id"]
    assert len((await b.search("kiwis", user_id="u"))["results"]) == 3  # cache noticed the writes
    await a.delete(mid)
    assert len((await b.search("kiwis", user_id="u"))["results"]) == 2
    await a.close()
    await b.close()
