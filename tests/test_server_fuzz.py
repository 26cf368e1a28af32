"""Property-based fuzzing of every endpoint of the server's OpenAPI schema (schemathesis).

Over real HTTP, on SQLite and PostgreSQL server state: no request answers a 5xx, every 4xx is the
JSON error body, and a refused request leaves the stored memories, messages and events unchanged.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "server"))
from srvhelpers import ServerProcess, drop_state_schema, make_key_on, start_on_state, stored_counts  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    srv = start_on_state(
        tmp_path_factory.mktemp(f"fuzz-{request.param}"), request.param, pg_url, worker_tasks=0
    )
    key = make_key_on(srv, "org-f", "proj-f")[0]
    try:
        yield srv, key
    finally:
        srv.stop()
        drop_state_schema(srv, pg_url)


def test_no_request_breaks_the_server(fuzzed: tuple[ServerProcess, str]) -> None:
    """A few generated requests per operation, valid-shaped and schema-violating alike."""
    srv, key = fuzzed
    api = schemathesis.openapi.from_url(srv.url + "/openapi.json")
    problems: list[str] = []
    counts = [stored_counts(srv, key)]  # as of the last accepted request
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=2,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                database=None,
                phases=[Phase.generate],
            )
            def run(case: Any) -> None:
                problem = check(srv, key, case, counts)
                if problem:
                    problems.append(problem)

            with contextlib.suppress(Unsatisfiable):  # nothing to negate in this operation
                run()
    assert not problems, "\n".join(problems[:20])


def check(srv: ServerProcess, key: str, case: Any, counts: list[Any]) -> str | None:
    """What is wrong with the server's answer to ``case`` (None when nothing is)."""
    response = case.call(base_url=srv.url, headers={"Authorization": f"Token {key}"}, timeout=60)
    where = f"{case.method} {case.formatted_path} {str(case.body)[:200]!r}"
    if response.status_code >= 500:
        return f"{where}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            return f"{where}: {response.status_code} without the JSON error body: {response.text[:200]}"
        if set(error) != {"code", "message", "details"}:
            return f"{where}: error body {error}"
        if stored_counts(srv, key) != counts[0]:
            return f"{where}: refused ({response.status_code}) but the stored data changed"
        return None
    counts[0] = stored_counts(srv, key)
    return None
