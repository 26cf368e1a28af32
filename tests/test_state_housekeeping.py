"""Housekeeping across processes: retention pruning (both state stores), shared rate-limit buckets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engram.service import Delivery, ServiceState


@pytest.fixture(params=["sqlite", "postgres"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ServiceState]:
    if request.param == "sqlite":
        from engram.stores.sqlite.service import SQLiteServiceState

        s: ServiceState = SQLiteServiceState(path=tmp_path / "server.db")
    else:
        from engram.stores.postgres.service import PostgresServiceState

        s = PostgresServiceState(
            url=request.getfixturevalue("pg_url"), schema_name=request.getfixturevalue("pg_schema")
        )
    await s.open()
    yield s
    await s.close()


async def test_prune_keeps_live_jobs_and_frees_idempotency_keys(state: ServiceState) -> None:
    org = await state.ensure_org("o")
    project = (await state.ensure_project(org.id, "p")).id
    done = (await state.enqueue(project, "ADD", {"n": 1}, idempotency_key="k", request_hash="h1")).job
    claimed = await state.claim("r", kinds=("ADD",), lease_seconds=30, max_attempts=5)
    assert claimed is not None and claimed.id == done.id
    assert await state.complete(done.id, "r", [{"ok": True}])
    pending = (await state.enqueue(project, "ADD", {"n": 2})).job
    hook = await state.create_webhook(project, "h", "http://127.0.0.1:9/", ["memory_add"])
    await state.log_delivery(Delivery(hook.id, pending.id, 1, 500, "HTTP 500", time.time()))

    assert await state.prune(3600) == 0  # nothing is an hour old yet
    assert await state.get_job(project, done.id) is not None
    await asyncio.sleep(0.05)
    assert await state.prune(0.01) == 2  # the finished job and the delivery
    assert await state.get_job(project, done.id) is None
    assert await state.get_job(project, pending.id) is not None  # still to run
    assert await state.list_deliveries(hook.id) == []
    again = await state.enqueue(project, "ADD", {"n": 3}, idempotency_key="k", request_hash="h2")
    assert again.created  # the pruned key is free again


async def test_the_job_runner_prunes_after_the_retention(tmp_path: Path) -> None:
    from engram.embedders.fake import FakeEmbedder
    from engram.memory import AsyncMemory
    from engram.server.jobs import JobRunner
    from engram.server.settings import ServerSettings
    from engram.stores.sqlite import SQLiteStore
    from engram.stores.sqlite.service import SQLiteServiceState

    state = SQLiteServiceState(path=tmp_path / "server.db")
    await state.open()
    engine = AsyncMemory(store=SQLiteStore(path=tmp_path / "m.db"), embedder=FakeEmbedder())
    settings = ServerSettings(home=tmp_path, retention_days=1e-6, prune_interval=0.05, poll_interval=0.05)
    org = await state.ensure_org("o")
    project = (await state.ensure_project(org.id, "p")).id
    job = (
        await state.enqueue(project, "ADD", {"kwargs": {"messages": "tea", "user_id": "u", "infer": False}})
    ).job
    runner = JobRunner(engine, state, settings)
    runner.start(1)
    try:
        for _ in range(200):  # the job runs, then is pruned once older than the retention
            if await state.get_job(project, job.id) is None:
                break
            await asyncio.sleep(0.05)
        assert await state.get_job(project, job.id) is None
        assert (await engine.namespace_view(project).get_all(user_id="u"))["total"] == 1
    finally:
        await runner.stop()
        await engine.close()
        await state.close()


async def test_rate_limit_buckets_are_shared_by_processes_on_postgres(pg_url: str, pg_schema: str) -> None:
    """Two state objects (two pools, as two server processes have) draw from one bucket."""
    from engram.stores.postgres.service import PostgresServiceState

    first, second = (
        PostgresServiceState(url=pg_url, schema_name=pg_schema),
        PostgresServiceState(url=pg_url, schema_name=pg_schema),
    )
    await first.open()
    await second.open()
    try:
        waits = [await (first if i % 2 else second).take_token("proj", 3) for i in range(4)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        assert waits[3] is not None and 0 < waits[3] <= 20.0  # one token comes back every 20 s
        assert await first.take_token("other", 3) == 0.0  # buckets are per project
        assert await first.take_token("proj", 0) == 0.0  # 0: no limit
    finally:
        await first.close()
        await second.close()


async def test_the_embedded_state_limits_per_process(tmp_path: Path) -> None:
    from engram.stores.sqlite.service import SQLiteServiceState

    state = SQLiteServiceState(path=tmp_path / "server.db")
    await state.open()
    try:
        assert await state.take_token("proj", 3) is None  # the server's in-process bucket applies
    finally:
        await state.close()
