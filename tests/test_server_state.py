"""The server state, on every backend (SQLite and PostgreSQL): keys, the durable job queue's
claim/lease/complete rules under concurrency, idempotency, webhooks, entities, exports, settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engram.errors import ConfigError, ConflictError
from engram.service import ServiceState, hash_api_key
from engram.stores.sqlite.service import SQLiteServiceState


@pytest.fixture
async def state(state_factory: Callable[[], ServiceState]) -> AsyncIterator[ServiceState]:
    s = state_factory()
    await s.open()
    yield s
    await s.close()


async def _project(state: ServiceState, name: str = "p") -> str:
    org = await state.ensure_org("o")
    return (await state.ensure_project(org.id, name)).id


async def test_sqlite_keys_are_stored_hashed_and_revocable(tmp_path: Path) -> None:
    state = SQLiteServiceState(path=tmp_path / "server.db")
    await state.open()
    project = await _project(state)
    key = await state.create_key(project, name="ci")
    raw = (tmp_path / "server.db").read_bytes() + (
        (tmp_path / "server.db-wal").read_bytes() if (tmp_path / "server.db-wal").exists() else b""
    )
    assert key.encode() not in raw
    ctx = await state.lookup_key(hash_api_key(key))
    assert ctx is not None and ctx.project.id == project and ctx.org.name == "o"
    assert await state.lookup_key(hash_api_key(key + "x")) is None
    assert await state.revoke_key(ctx.key.id)
    assert await state.lookup_key(hash_api_key(key)) is None
    assert not await state.revoke_key(ctx.key.id)
    await state.close()


async def test_migrations_are_recorded_and_reopen_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        s = SQLiteServiceState(path=tmp_path / "s.db")
        await s.open()
        await s.close()
    import sqlite3

    with sqlite3.connect(tmp_path / "s.db") as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [1, 2, 3, 4, 5]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_state_backends_are_registered_and_their_settings_checked(tmp_path: Path) -> None:
    from engram import registry
    from engram.server.app import build_state
    from engram.server.settings import ServerSettings

    assert {"sqlite", "postgres"} <= set(registry.available("service_state"))
    state = build_state(ServerSettings(home=tmp_path))
    assert isinstance(state, SQLiteServiceState) and state.path == tmp_path / "server.db"
    with pytest.raises(ConfigError, match="busy_timeout_msx"):
        build_state(ServerSettings(home=tmp_path, state_config={"busy_timeout_msx": 5}))
    with pytest.raises(ConfigError, match="Known providers"):
        build_state(ServerSettings(home=tmp_path, state_backend="nosuch"))


async def test_claim_lease_and_exactly_once_completion(state: ServiceState) -> None:
    project = await _project(state)
    job = (await state.enqueue(project, "ADD", {"n": 1})).job
    assert job.status == "PENDING"
    first = await state.claim("w1", kinds=("ADD",), lease_seconds=0.2, max_attempts=5)
    assert first is not None and first.id == job.id and first.status == "RUNNING" and first.attempts == 1
    assert await state.claim("w2", kinds=("ADD",), lease_seconds=0.2, max_attempts=5) is None
    await asyncio.sleep(0.3)  # w1 "crashed": its lease ran out
    second = await state.claim("w2", kinds=("ADD",), lease_seconds=5, max_attempts=5)
    assert second is not None and second.id == job.id and second.attempts == 2
    assert not await state.heartbeat(job.id, "w1", 5)
    assert not await state.complete(job.id, "w1", [{"late": True}])  # the old claim is void
    assert await state.heartbeat(job.id, "w2", 5)
    assert await state.complete(job.id, "w2", [{"ok": True}])
    assert not await state.complete(job.id, "w2", [{"twice": True}])
    done = await state.get_job(project, job.id)
    assert done is not None and done.status == "SUCCEEDED" and done.results == [{"ok": True}]


async def test_concurrent_claims_never_share_a_job(
    state: ServiceState, state_factory: Callable[[], ServiceState]
) -> None:
    """Four connections (pools), as four processes would have, race for 60 jobs."""
    project = await _project(state)
    for i in range(60):
        await state.enqueue(project, "ADD", {"i": i})
    others = [state_factory() for _ in range(3)]
    for other in others:
        await other.open()
    states = [state, *others]
    try:
        claims = await asyncio.gather(
            *(
                states[i % 4].claim(f"w{i}", kinds=("ADD",), lease_seconds=30, max_attempts=3)
                for i in range(90)
            )
        )
    finally:
        for other in others:
            await other.close()
    taken = [c.id for c in claims if c is not None]
    assert len(taken) == 60 and len(set(taken)) == 60


async def test_fail_retry_and_abandon(state: ServiceState) -> None:
    project = await _project(state)
    job = (await state.enqueue(project, "ADD", {})).job
    assert await state.claim("w", kinds=("ADD",), lease_seconds=30, max_attempts=2) is not None
    assert await state.fail(job.id, "w", "provider_error: boom", retry_at=time.time() + 0.2)
    assert await state.claim("w", kinds=("ADD",), lease_seconds=30, max_attempts=2) is None  # not due yet
    await asyncio.sleep(0.25)
    again = await state.claim("w", kinds=("ADD",), lease_seconds=0.05, max_attempts=2)
    assert again is not None and again.attempts == 2 and again.error == "provider_error: boom"
    await asyncio.sleep(0.1)  # lost again, and that was the last attempt
    assert await state.claim("w", kinds=("ADD",), lease_seconds=30, max_attempts=2) is None
    final = await state.get_job(project, job.id)
    assert final is not None and final.status == "FAILED" and "abandoned" in (final.error or "")


async def test_idempotency_keys(state: ServiceState) -> None:
    project = await _project(state)
    other = await _project(state, "other")
    a = await state.enqueue(project, "ADD", {"x": 1}, idempotency_key="k", request_hash="h1")
    b = await state.enqueue(project, "ADD", {"x": 1}, idempotency_key="k", request_hash="h1")
    assert a.created and not b.created and a.job.id == b.job.id
    with pytest.raises(ConflictError):
        await state.enqueue(project, "ADD", {"x": 2}, idempotency_key="k", request_hash="h2")
    c = await state.enqueue(other, "ADD", {"x": 1}, idempotency_key="k", request_hash="h1")
    assert c.created and c.job.id != a.job.id
    jobs, total = await state.list_jobs(project, kind="ADD", status=None, limit=10, offset=0)
    assert total == 1 and [j.id for j in jobs] == [a.job.id]
    racing = await asyncio.gather(
        *(state.enqueue(project, "ADD", {}, idempotency_key="r", request_hash="h") for _ in range(10))
    )
    assert sum(e.created for e in racing) == 1 and len({e.job.id for e in racing}) == 1


async def test_claimed_at_insert_is_not_taken_by_others(state: ServiceState) -> None:
    project = await _project(state)
    job = (await state.enqueue(project, "ADD", {}, claim_as="request", lease_seconds=30)).job
    assert job.status == "RUNNING" and job.claimed_by == "request"
    assert await state.claim("w", kinds=("ADD",), lease_seconds=30, max_attempts=3) is None
    assert await state.complete(job.id, "request", [])


async def test_feed_cursors_move_only_from_where_they_are(state: ServiceState) -> None:
    assert await state.get_cursor("feed") is None
    assert await state.move_cursor("feed", None, "0:5")
    assert not await state.move_cursor("feed", None, "0:3")  # another process placed it first
    assert not await state.move_cursor("feed", "0:4", "0:9")  # stale: it is at 0:5
    assert await state.move_cursor("feed", "0:5", "0:9")
    assert await state.get_cursor("feed") == "0:9" and await state.get_cursor("other") is None


async def test_webhooks_entities_exports_settings_are_per_project(state: ServiceState) -> None:
    a, b = await _project(state, "a"), await _project(state, "b")
    hook = await state.create_webhook(a, "h", "http://127.0.0.1/x", ["memory_add"])
    assert hook.secret.startswith("whsec_")
    assert await state.get_webhook(b, hook.id) is None
    assert await state.update_webhook(b, hook.id, {"name": "stolen"}) is None
    assert not await state.delete_webhook(b, hook.id)
    updated = await state.update_webhook(a, hook.id, {"event_types": ["memory_delete"], "is_active": False})
    assert updated is not None and updated.event_types == ["memory_delete"] and not updated.is_active
    await state.touch_entities(a, {"user_id": "alice", "agent_id": "bot"})
    await state.touch_entities(a, {"user_id": "alice"})
    assert {(e.type, e.name) for e in await state.list_entities(a)} == {("user", "alice"), ("agent", "bot")}
    assert await state.list_entities(b) == []
    assert await state.delete_entity(a, "agent", "bot")
    export = await state.create_export(a, {"type": "object"}, {"user_id": "alice"}, {"memories": []})
    assert await state.get_export(b, export.id) is None
    latest = await state.get_export(a, None)
    assert latest is not None and latest.id == export.id and latest.result == {"memories": []}
    assert await state.update_project_settings(a, {"custom_instructions": "x"}) == {
        "custom_instructions": "x"
    }
    assert await state.update_project_settings(a, {"custom_instructions": None}) == {}
    assert await state.get_project_settings(b) == {}
    await state.set_rate_limit(a, 7)
    assert {p.name: p.rate_limit_per_minute for _, p in await state.list_projects()} == {"a": 7, "b": None}


async def test_unexpected_errors_answer_a_bare_json_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catch-all handler: no message, no trace, from the app as built by create_app."""
    import httpx

    from engram.memory import AsyncMemory
    from engram.server.app import create_app
    from engram.server.settings import ServerSettings

    settings = ServerSettings(
        home=tmp_path, memory_config={"embedder": {"provider": "fake"}, "llm_from_env": False}, worker_tasks=0
    )
    app = create_app(settings)
    state = app.state.server.state
    await state.open()
    org = await state.ensure_org("o")
    key = await state.create_key((await state.ensure_project(org.id, "p")).id)

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals at /srv/engram")

    monkeypatch.setattr(AsyncMemory, "search", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://engram") as http:
        response = await http.post(
            "/v3/memories/search/",
            headers={"Authorization": f"Token {key}"},
            json={"query": "q", "user_id": "u"},
        )
    await state.close()
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json()["error"] == {
        "code": "internal_error",
        "message": f"internal error (request id {request_id})",
        "details": {"request_id": request_id},
    }
    assert "secret" not in response.text and "Traceback" not in response.text


async def test_cors_is_off_by_default_and_configurable(tmp_path: Path) -> None:
    import httpx

    from engram.server.app import create_app
    from engram.server.settings import ServerSettings

    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    for origins, allowed in (("", None), ("http://app.example", "http://app.example")):
        settings = ServerSettings(home=tmp_path, worker_tasks=0, cors_origins=origins)
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://engram") as http:
            response = await http.options("/v3/memories/search/", headers=preflight)
        assert response.headers.get("access-control-allow-origin") == allowed


async def test_project_custom_instructions_reach_the_extractor(tmp_path: Path) -> None:
    """mem0's client.project.update(custom_instructions=...) guides every add of the project."""
    import json

    import httpx

    from engram.embedders.fake import FakeEmbedder
    from engram.llms.scripted import ScriptedLLM
    from engram.memory import AsyncMemory
    from engram.server.app import create_app
    from engram.server.settings import ServerSettings
    from engram.stores.sqlite import SQLiteStore

    llm = ScriptedLLM([json.dumps({"facts": [{"text": "Alice drinks oolong", "source_message_ids": []}]})])
    engine = AsyncMemory(store=SQLiteStore(path=tmp_path / "m.db"), embedder=FakeEmbedder(), llm=llm)
    app = create_app(ServerSettings(home=tmp_path, worker_tasks=0), engine=engine)
    state = app.state.server.state
    await state.open()
    org = await state.ensure_org("o")
    project = await state.ensure_project(org.id, "p")
    key = await state.create_key(project.id)
    path = f"/api/v1/orgs/organizations/{org.id}/projects/{project.id}/"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://engram", headers={"Authorization": f"Token {key}"}
    ) as http:
        patched = await http.patch(path, json={"custom_instructions": "Only keep facts about TEA-XYZZY."})
        assert patched.status_code == 200 and patched.json()["custom_instructions"].startswith("Only keep")
        got = await http.get(path, params={"fields": ["custom_instructions"]})
        assert got.json() == {"custom_instructions": "Only keep facts about TEA-XYZZY."}
        bad = await http.patch(path, json={"colour": "blue"})
        assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "colour"
        other = await http.get(f"/api/v1/orgs/organizations/{org.id}/projects/proj_other/")
        assert other.status_code == 404
        added = await http.post(
            "/v3/memories/add/",
            json={"messages": "I drink oolong every day", "user_id": "alice", "async_mode": False},
        )
        assert added.status_code == 200, added.text
        assert [r["memory"] for r in added.json()["results"]] == ["Alice drinks oolong"]
    await state.close()
    await engine.close()
    prompt_text = json.dumps([call.messages for call in llm.calls], default=str)
    assert "TEA-XYZZY" in prompt_text
