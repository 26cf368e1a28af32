"""The webhook outbox: the store's change feed (history rows committed with the memory), the relay that
turns it into delivery jobs, and delivery after a crash, exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from engram import AsyncMemory, MemoryClient
from engram.embedders.fake import FakeEmbedder
from engram.interfaces import Store
from engram.server.settings import ServerSettings
from engram.server.webhooks import FEED, Webhooks
from engram.service import ServiceState
from engram.types import RestoredMemory

sys.path.insert(0, str(Path(__file__).parent / "server"))
from srvhelpers import ServerProcess, free_port, make_key_on

from tests._pg import server_settings


async def _feed_after(store: Store, cursor: str | None) -> list[tuple[str, str, str | None]]:
    return [(c.event, c.memory_id, c.new_memory or c.old_memory) for c in await store.changes(cursor, 100)]


async def test_the_change_feed_has_each_change_once_in_commit_order(
    store_factory: Callable[[], Store],
) -> None:
    memory = AsyncMemory(store=store_factory(), embedder=FakeEmbedder())
    await memory.open()
    try:
        a = (await memory.add("Alice likes tea", user_id="u", infer=False))["results"][0]["id"]
        b = (await memory.add("Bob likes coffee", user_id="u", infer=False))["results"][0]["id"]
        await memory.update(a, "Alice likes green tea")
        await memory.delete(b)
        expected = [
            ("ADD", a, "Alice likes tea"),
            ("ADD", b, "Bob likes coffee"),
            ("UPDATE", a, "Alice likes green tea"),
            ("DELETE", b, "Bob likes coffee"),
        ]
        assert await _feed_after(memory.store, None) == expected
        walked, cursor = [], None
        while page := await memory.store.changes(cursor, 1):  # one at a time from the cursors
            walked.append((page[0].event, page[0].memory_id))
            cursor = page[0].cursor
        assert walked == [(e, m) for e, m, _ in expected]
        assert await memory.store.changes(cursor, 100) == []
        # an import writes history back, but replays no events
        record, ns = await memory.store.get(memory.namespace, a), memory.namespace
        assert record is not None
        restored = RestoredMemory(
            dataclasses.replace(record, id=str(uuid.uuid4())),
            (await memory.store.vectors_for(ns, [a]))[a],
            [dataclasses.replace(h, id=str(uuid.uuid4())) for h in await memory.store.history(ns, a)],
        )
        assert await memory.store.restore("elsewhere", restored)
        assert await memory.store.changes(cursor, 100) == []
    finally:
        await memory.close()


async def test_postgres_feed_waits_for_a_transaction_that_commits_late(
    postgres_store_factory: Callable[[], Store], pg_url: str, pg_schema: str
) -> None:
    import psycopg

    memory = AsyncMemory(store=postgres_store_factory(), embedder=FakeEmbedder())
    await memory.open()
    try:
        late = await psycopg.AsyncConnection.connect(pg_url)
        await late.execute(  # takes its seq first, commits last
            f"INSERT INTO {pg_schema}.history (id, namespace, memory_id, event, new_memory, created_at) "
            "VALUES ('late-change', 'default', 'late-memory', 'ADD', 'committed late', now())"
        )
        await memory.add("Committed first", user_id="u", infer=False)
        assert await memory.store.changes(None, 100) == []  # the open transaction holds the feed back
        await late.commit()
        await late.close()
        assert [m for _, _, m in await _feed_after(memory.store, None)] == [
            "committed late",
            "Committed first",
        ]
    finally:
        await memory.close()


async def _webhook_jobs(state: ServiceState, project: str) -> list[tuple[int, str, str]]:
    jobs, _ = await state.list_jobs(project, kind="WEBHOOK", status=None, limit=1000, offset=0)
    return sorted(
        (j.payload["webhook_id"], j.payload["body"]["event_type"], j.payload["body"]["event_details"]["id"])
        for j in jobs
    )


async def test_relays_at_once_or_after_a_crash_queue_each_delivery_once(
    store_factory: Callable[[], Store], state_factory: Callable[[], ServiceState]
) -> None:
    state = state_factory()
    await state.open()
    memory = AsyncMemory(store=store_factory(), embedder=FakeEmbedder())
    await memory.open()
    relays = [Webhooks(state, memory.store, ServerSettings(), asyncio.Event()) for _ in range(3)]
    try:
        project = (await state.ensure_project((await state.ensure_org("o")).id, "p")).id
        assert await relays[0].relay() == 0  # nothing to send yet
        hooks = [await state.create_webhook(project, f"h{i}", "http://127.0.0.1:9/", []) for i in range(2)]
        view = memory.namespace_view(project)
        added = []
        for i in range(3):
            added.append((await view.add(f"Fact {i}", user_id="u", infer=False))["results"][0]["id"])
            await asyncio.gather(*(r.relay() for r in relays))  # all read the same changes at once
        await view.delete(added[0])
        # a relay that queued but died before moving the cursor: the next relay queues nothing twice
        crashed = await memory.store.changes(await state.get_cursor(FEED), 100)
        assert await relays[0]._queue(crashed) == 2
        await asyncio.gather(*(r.relay() for r in relays))
        expected = [(h.id, "memory_add", m) for h in hooks for m in added]
        expected += [(h.id, "memory_delete", added[0]) for h in hooks]
        assert await _webhook_jobs(state, project) == sorted(expected)
        assert await memory.store.changes(await state.get_cursor(FEED), 100) == []
    finally:
        await memory.close()
        await state.close()


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def _seen(received: list[dict[str, Any]], count: int) -> list[tuple[str, str, str]]:
    deadline = time.monotonic() + 60  # a loaded CI machine starts servers slowly
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # anything delivered twice would arrive by now
    details = [
        (p["event_type"], p["event_details"]["id"], p["event_details"]["data"]["memory"]) for p in received
    ]
    return sorted(details)


def _direct_store(srv: ServerProcess) -> Store:
    """The server's memory store, opened by this process (as a script using the library would)."""
    config = srv.settings.get("memory_config", {}).get("store", {}).get("config")
    if config:
        from engram.stores.postgres import PostgresStore

        return PostgresStore(**config)
    from engram.stores.sqlite import SQLiteStore

    return SQLiteStore(path=srv.home / "engram.db")


async def _write_while_down(srv: ServerProcess, project: str, delete_id: str) -> str:
    memory = AsyncMemory(store=_direct_store(srv), embedder=FakeEmbedder())
    try:
        view = memory.namespace_view(project)
        added = (await view.add("Written while the server was down", user_id="u", infer=False))["results"]
        await view.delete(delete_id)
        return str(added[0]["id"])
    finally:
        await memory.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_change_committed_while_no_server_runs_is_delivered_once_after_restart(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    settings: dict[str, Any] = {"webhook_backoff_seconds": 0.2}
    if backend == "postgres":
        settings |= server_settings(request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema"))
    url, received = receiver
    home = tmp_path / "home"
    srv = ServerProcess(home, **settings).start(timeout=60)
    try:
        key, _, project = make_key_on(srv, "org", "proj")
        auth = {"Authorization": f"Token {key}"}
        hook = {"name": "h", "url": url, "event_types": ["memory_add", "memory_delete"]}
        assert httpx.post(
            f"{srv.url}/api/v1/webhooks/projects/{project}/", headers=auth, json=hook
        ).is_success
        with MemoryClient(api_key=key, host=srv.url) as client:
            live = client.add("Live fact", user_id="u", infer=False, async_mode=False)
        live_id = live["results"][0]["id"]
        assert _seen(received, 1) == [("memory_add", live_id, "Live fact")]
    finally:
        srv.kill()  # SIGKILL: nothing of the server runs while the next changes commit
    down_id = asyncio.run(_write_while_down(srv, project, live_id))
    servers = [ServerProcess(home, **settings) for _ in range(2)]  # two relays at once
    try:
        for s in servers:
            s.start(timeout=60)
        assert _seen(received, 3) == sorted(
            [
                ("memory_add", live_id, "Live fact"),
                ("memory_add", down_id, "Written while the server was down"),
                ("memory_delete", live_id, "Live fact"),
            ]
        )
        assert {p["project_id"] for p in received} == {project}
    finally:
        for s in servers:
            s.stop()
