"""What is PostgreSQL's own in the server state (the shared rules run on every backend in
tests/test_server_state.py): keys are stored hashed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from engram.service import hash_api_key
from engram.stores.postgres.service import PostgresServiceState

pytestmark = pytest.mark.postgres


@pytest.fixture
async def state(pg_url: str, pg_schema: str) -> AsyncIterator[PostgresServiceState]:
    s = PostgresServiceState(url=pg_url, schema_name=pg_schema)
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
