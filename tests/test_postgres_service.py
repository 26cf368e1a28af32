"""The PostgreSQL server state: keys, the job queue's claim/lease/complete rules under concurrency
(several pools, as several processes would have), idempotency, webhooks, entities, exports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from engram.errors import ConflictError
from engram.service import hash_api_key
from engram.stores.postgres.service import PostgresServiceState

pytestmark = pytest.mark.postgres


@pytest.fixture
async def state(pg_url: str, pg_schema: str) -> AsyncIterator[PostgresServiceState]:
    s = PostgresServiceState(pg_url, pg_schema)
    await s.open()
    yield s
    await s.close()


async def _project(state: PostgresServiceState, name: str = "p") -> str:
    org = await state.ensure_org("o")
    return (await state.ensure_project(org.id, name)).id


async def test_keys_are_stored_hashed_and_revocable(
    state: PostgresServiceState, pg_url: str, pg_schema: str
) -> None:
    project = await _project(state)
    assert await _project(state) == project  # ensure_* is idempotent
    key = await state.create_key(project, name="ci")
    with psycopg.connect(pg_url) as conn:
        dump = str(conn.execute(f"SELECT * FROM {pg_schema}.api_keys").fetchall())
    assert key not in dump
    ctx = await state.lookup_key(hash_api_key(key))
    assert ctx is not None and ctx.project.id == project and ctx.org.name == "o"
    assert await state.lookup_key(hash_api_key(key + "x")) is None
    assert await state.revoke_key(ctx.key.id)
    assert await state.lookup_key(hash_api_key(key)) is None
    assert not await state.revoke_key(ctx.key.id)


async def test_claim_lease_and_exactly_once_completion(state: PostgresServiceState) -> None:
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
    state: PostgresServiceState, pg_url: str, pg_schema: str
) -> None:
    project = await _project(state)
    for i in range(60):
        await state.enqueue(project, "ADD", {"i": i})
    others = [PostgresServiceState(pg_url, pg_schema, max_pool_size=4) for _ in range(3)]
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


async def test_fail_retry_and_abandon(state: PostgresServiceState) -> None:
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


async def test_idempotency_keys(state: PostgresServiceState) -> None:
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


async def test_claimed_at_insert_is_not_taken_by_others(state: PostgresServiceState) -> None:
    project = await _project(state)
    job = (await state.enqueue(project, "ADD", {}, claim_as="request", lease_seconds=30)).job
    assert job.status == "RUNNING" and job.claimed_by == "request"
    assert await state.claim("w", kinds=("ADD",), lease_seconds=30, max_attempts=3) is None
    assert await state.complete(job.id, "request", [])


async def test_webhooks_entities_exports_settings_are_per_project(state: PostgresServiceState) -> None:
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
