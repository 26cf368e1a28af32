"""Every method of mem0's 2.2.1 MemoryClient (and its project) against a live server, on SQLite and
PostgreSQL state; the npm client's profile methods; profile, summary and stats over plain HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "server"))
from srvhelpers import ServerProcess, client_env, make_key, mem0_python

from tests._pg import make_key as make_pg_key
from tests._pg import server_settings

pytestmark = pytest.mark.slow
DRIVERS = Path(__file__).parent / "server"


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A server and the key of a fresh project, on SQLite files or on PostgreSQL."""
    if request.param == "sqlite":
        server = ServerProcess(tmp_path / "srv").start()
        yield server, make_key(server.state_path, "acme", "platform")[0]
    else:
        url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
        server = ServerProcess(tmp_path / "srv", **server_settings(url, schema)).start(timeout=60)
        yield server, make_pg_key(url, schema, "acme", "platform")
    server.stop()


def test_every_mem0_client_method_answers_2xx(platform: tuple[ServerProcess, str], tmp_path: Path) -> None:
    server, key = platform
    proc = subprocess.run(
        [str(mem0_python("2.2.1")), str(DRIVERS / "mem0_platform_driver.py"), server.url, key, "alice"],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:] + server.log()
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["uncalled"] == []
    bad = {name: codes for name, codes in out["methods"].items() if any(not 200 <= c < 300 for c in codes)}
    assert bad == {}
    assert out["methods"]["chat"] == []  # raises NotImplementedError in the client itself
    assert out["added"] == [
        "alice is not a big fan of thriller movies",
        "alice is vegetarian",
        "alice loves sci-fi movies",
        "alice's daughter Maya starts ballet in September",
    ]
    assert (
        len(out["summary"]["ids"]) == 4
        and "Constraints: alice is vegetarian and avoids eggs." in out["summary"]["text"]
    )
    assert out["generate"] == {
        "status": "pending",
        "operation": "trigger",
        "entity_type": "user",
        "replayed": False,
    }
    assert out["generate_replayed"] is True and out["job"] == "succeeded"
    assert out["profile"] == {
        "status": "succeeded",
        "preferences": ["alice loves sci-fi movies", "alice is not a big fan of thriller movies"],
    }
    assert out["sample"] == {"entity_ids": ["alice"], "job": "succeeded"}
    assert out["members"] == [{"email": "ana@example.com", "role": "OWNER"}]
    assert out["stats"] == {"total_memories": 4, "total_users": 1, "total_events": 2} and out["events"] == 2
    assert out["project"] == {"custom_instructions": "Durable facts only."}
    assert out["created_project"] == "second-alice" and out["after_reset"] == []
    time.sleep(2.2)  # the server caches key lookups for 2 s
    after = httpx.get(server.url + "/v1/ping/", headers={"Authorization": f"Token {key}"})
    assert after.status_code == 401  # the project and its keys are gone


def _wait_profile(http: httpx.Client, user: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body = http.get(f"/v2/entities/user/{user}/profile/").json()
        if body["status"] != "pending" or time.monotonic() > deadline:
            return dict(body)
        time.sleep(0.05)


def test_profile_statuses_staleness_and_stats(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "srv").start()
    try:
        key = make_key(server.state_path, "acme", "statuses")[0]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Token {key}"}) as http:
            assert http.get("/v2/entities/user/nobody/profile/").status_code == 404
            add = {"messages": "I love sci-fi movies", "user_id": "bo", "infer": False, "async_mode": False}
            assert http.post("/v3/memories/add/", json=add).status_code == 200
            first = _wait_profile(http, "bo")  # built by the queue on first read
            assert first["status"] == "succeeded" and first["profile"]["preferences"] == [
                "I love sci-fi movies"
            ]
            add["messages"] = "I'm allergic to peanuts"
            http.post("/v3/memories/add/", json=add)
            stale = http.get("/v2/entities/user/bo/profile/").json()
            assert stale["stale"] is True and stale["status"] in ("pending", "succeeded")
            fresh = _wait_profile(http, "bo")
            assert fresh["generation_count"] == 2 and fresh["profile"]["constraints"] == [
                "I'm allergic to peanuts"
            ]
            http.delete("/v1/memories/", params={"user_id": "bo"})
            assert http.get("/v2/entities/user/bo/profile/").json()["status"] == "insufficient_data"
            unchanged = http.post("/v2/profiles/settings/", json={"enabled": None, "entities": None})
            assert unchanged.status_code == 200 and unchanged.json()["enabled"] is True
            http.post("/v2/profiles/settings/", json={"enabled": False})
            assert http.get("/v2/entities/user/bo/profile/").json()["status"] == "not_enabled"
            refused = http.post("/v2/profiles/jobs/", json={"operation": "trigger", "entity_id": "bo"})
            assert refused.status_code == 400
            bad = http.post(
                "/v2/profiles/settings/", json={"entities": {"user": {"schema": {"type": "object"}}}}
            )
            assert bad.status_code == 422 and "schema" in bad.text
            stats = http.get("/v1/stats/").json()
            assert stats["total_memories"] == 0 and stats["total_users"] == 1 and stats["total_events"] == 2
            events = http.get("/v1/memories/events/").json()
            assert events["count"] == 2 and events["results"][0]["status"] == "SUCCEEDED"
    finally:
        server.stop()


def test_entity_mentions_endpoint(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "srv").start()
    try:
        key = make_key(server.state_path, "acme", "mentions")[0]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Token {key}"}) as http:
            for text in ("My daughter Maya loves horses.", "My daughter has a recital on 2026-12-11."):
                body = {"messages": text, "user_id": "nora", "infer": False, "async_mode": False}
                assert http.post("/v3/memories/add/", json=body).status_code == 200
            listed = http.get("/v1/entities/").json()
            assert [(e["type"], e["name"]) for e in listed["results"]] == [("user", "nora")]
            mentions = http.get("/v1/entities/user/nora/mentions/").json()
            assert [(e["name"], e["type"], e["mentions"]) for e in mentions["results"]] == [
                ("Maya", "person", 2),
                ("recital", "event", 1),
            ]
            found = http.post("/v3/memories/", json={"filters": {"user_id": "nora", "entity": "Maya"}}).json()
            assert found["count"] == 2
            summary = http.post(
                "/v1/summary/", json={"filters": {"user_id": "nora", "entity": "recital"}}
            ).json()
            assert summary["count"] == 1 and "recital" in summary["summary"]
    finally:
        server.stop()
