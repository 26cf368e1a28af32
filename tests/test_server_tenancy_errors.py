"""Tenancy (a key sees only its project) and every error status, against the real server over HTTP."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "server"))
from srvhelpers import ServerProcess, make_key

pytestmark = pytest.mark.slow
MISSING = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("tenancy"), max_body_bytes=20_000).start()
    yield server
    server.stop()


class Api:
    def __init__(self, srv: ServerProcess, key: str) -> None:
        self.http = httpx.Client(base_url=srv.url, headers={"Authorization": f"Token {key}"}, timeout=30)
        ping = self.http.get("/v1/ping/").json()
        self.org_id, self.project_id = ping["org_id"], ping["project_id"]

    def add(self, text: str, **scope: str) -> dict[str, Any]:
        body = {"messages": [{"role": "user", "content": text}], "infer": False, "async_mode": False, **scope}
        response = self.http.post("/v3/memories/add/", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code
    return dict(body["error"])


def test_a_key_sees_only_its_project(srv: ServerProcess) -> None:
    a = Api(srv, make_key(srv.state_path, "org-a", "proj-a")[0])
    b = Api(srv, make_key(srv.state_path, "org-b", "proj-b")[0])
    a_added = a.add("Alpha secret: the vault code is 1234", user_id="shared")
    a_id = a_added["results"][0]["id"]
    a_only = a.add("Only in project A", user_id="a-only")["results"][0]["id"]
    b_id = b.add("Beta memory", user_id="shared")["results"][0]["id"]
    queued = a.call("POST", "/v3/memories/add/", json={"messages": "queued in A", "user_id": "shared"}).json()
    hook = a.call(
        "POST",
        f"/api/v1/webhooks/projects/{a.project_id}/",
        json={"name": "h", "url": "http://127.0.0.1:9/x"},
    ).json()
    export_id = a.call("POST", "/v1/exports/", json={"schema": {}, "filters": {"user_id": "shared"}}).json()[
        "id"
    ]

    for method, path, kw in [
        ("GET", f"/v1/memories/{a_id}/", {}),
        ("PUT", f"/v1/memories/{a_id}/", {"json": {"text": "hijacked"}}),
        ("DELETE", f"/v1/memories/{a_id}/", {}),
        ("GET", f"/v1/memories/{a_id}/history/", {}),
        ("GET", f"/v1/event/{queued['event_id']}/", {}),
        ("PUT", "/v1/batch/", {"json": {"memories": [{"memory_id": a_id, "text": "x"}]}}),
        ("DELETE", "/v1/batch/", {"json": {"memories": [{"memory_id": a_id}]}}),
        ("POST", "/v1/feedback/", {"json": {"memory_id": a_id, "feedback": "NEGATIVE"}}),
        ("POST", "/v1/exports/get/", {"json": {"memory_export_id": export_id}}),
        ("DELETE", "/v2/entities/user/a-only/", {}),
        ("GET", f"/api/v1/webhooks/projects/{a.project_id}/", {}),
        (
            "POST",
            f"/api/v1/webhooks/projects/{a.project_id}/",
            {"json": {"name": "x", "url": "http://127.0.0.1/"}},
        ),
        ("PUT", f"/api/v1/webhooks/{hook['webhook_id']}/", {"json": {"name": "stolen"}}),
        ("DELETE", f"/api/v1/webhooks/{hook['webhook_id']}/", {}),
        ("GET", f"/api/v1/webhooks/{hook['webhook_id']}/deliveries/", {}),
        ("GET", f"/api/v1/orgs/organizations/{a.org_id}/projects/{a.project_id}/", {}),
        (
            "PATCH",
            f"/api/v1/orgs/organizations/{a.org_id}/projects/{a.project_id}/",
            {"json": {"decay": True}},
        ),
        ("GET", f"/api/v1/orgs/organizations/{b.org_id}/projects/{a.project_id}/", {}),
        # mem0 1.x clients send org_id/project_id with every call: another project's ids are unknown
        ("GET", f"/v1/memories/{b_id}/", {"params": {"org_id": a.org_id, "project_id": a.project_id}}),
        (
            "POST",
            "/v2/memories/search/",
            {"json": {"query": "vault", "user_id": "shared", "project_id": a.project_id}},
        ),
        (
            "POST",
            "/v2/memories/",
            {"json": {"user_id": "shared", "org_id": a.org_id, "project_id": a.project_id}},
        ),
    ]:
        assert_error(b.call(method, path, **kw), 404)

    # Filters and scopes never reach into another project.
    for path in ("/v3/memories/search/", "/v2/memories/search/"):
        hits = b.call(
            "POST", path, json={"query": "vault code secret", "filters": {"user_id": "shared"}}
        ).json()
        assert [h["id"] for h in hits["results"]] == [b_id]
    for path in ("/v3/memories/", "/v2/memories/"):
        listed = b.call("POST", path, json={"filters": {"AND": [{"user_id": "shared"}]}})
        assert [m["id"] for m in listed.json()["results"]] == [b_id]
        assert b.call("POST", path, json={"filters": {"user_id": "a-only"}}).json()["count"] == 0
        assert b.call("POST", path, json={"user_id": "a-only"}).json()["results"] == []
    assert queued["event_id"] not in {e["id"] for e in b.call("GET", "/v1/events/").json()["results"]}
    assert {e["name"] for e in b.call("GET", "/v1/entities/").json()["results"]} == {"shared"}
    b_export = b.call("POST", "/v1/exports/", json={"schema": {}, "filters": {"user_id": "shared"}}).json()[
        "id"
    ]
    exported = b.call("POST", "/v1/exports/get/", json={"memory_export_id": b_export}).json()
    assert [m["id"] for m in exported["memories"]] == [b_id]
    assert b.call("POST", "/v1/exports/get/", json={}).json()["id"] == b_export  # "latest" is B's own
    assert b.call("DELETE", "/v1/memories/", params={"user_id": "shared"}).status_code == 200
    # Idempotency keys are per project.
    again = b.call(
        "POST",
        "/v3/memories/add/",
        json={"messages": "x", "user_id": "u"},
        headers={"Idempotency-Key": "same-key"},
    )
    other = a.call(
        "POST",
        "/v3/memories/add/",
        json={"messages": "y", "user_id": "u"},
        headers={"Idempotency-Key": "same-key"},
    )
    assert (
        again.status_code == other.status_code == 200 and again.json()["event_id"] != other.json()["event_id"]
    )

    # Project A is untouched by everything B tried.
    assert a.call("GET", f"/v1/memories/{a_id}/").json()["memory"] == "Alpha secret: the vault code is 1234"
    assert a.call("GET", f"/v1/memories/{a_only}/").status_code == 200
    assert a.call("GET", f"/api/v1/webhooks/projects/{a.project_id}/").json()[0]["name"] == "h"
    assert a.call("POST", "/v1/exports/get/", json={"memory_export_id": export_id}).status_code == 200
    assert [h["event"] for h in a.call("GET", f"/v1/memories/{a_id}/history/").json()] == ["ADD"]
    assert (
        "decay" not in a.call("GET", f"/api/v1/orgs/organizations/{a.org_id}/projects/{a.project_id}/").json()
    )


def test_error_statuses(srv: ServerProcess) -> None:
    key = make_key(srv.state_path, "org-e", "proj-e")[0]
    api = Api(srv, key)
    memory_id = api.add("An existing memory", user_id="e")["results"][0]["id"]

    # 400: malformed JSON; no scope
    bad = api.call(
        "POST", "/v3/memories/add/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(bad, 400, "invalid_json")
    assert_error(api.call("DELETE", "/v1/memories/"), 400, "scope_required")
    assert_error(api.call("POST", "/v3/memories/add/", json={"messages": "hello"}), 400, "scope_required")

    # 401: no key, wrong scheme, unknown key
    assert_error(httpx.get(srv.url + "/v1/ping/"), 401)
    assert_error(httpx.get(srv.url + "/v1/ping/", headers={"Authorization": f"Basic {key}"}), 401)
    assert_error(
        httpx.get(srv.url + "/v1/ping/", headers={"Authorization": "Token eg-nope"}), 401, "invalid_api_key"
    )

    # 403: a read-only key may read but not write
    ro = Api(srv, make_key(srv.state_path, "org-e", "proj-e", read_only=True)[0])
    assert ro.call("GET", f"/v1/memories/{memory_id}/").status_code == 200
    assert_error(
        ro.call("POST", "/v3/memories/add/", json={"messages": "x", "user_id": "e"}), 403, "forbidden"
    )
    assert_error(ro.call("DELETE", f"/v1/memories/{memory_id}/"), 403)

    # 404: unknown memory, event, route
    assert_error(api.call("GET", f"/v1/memories/{MISSING}/"), 404, "not_found")
    assert_error(api.call("PUT", f"/v1/memories/{MISSING}/", json={"text": "x"}), 404)
    assert_error(api.call("GET", f"/v1/event/{MISSING}/"), 404)
    assert_error(api.call("GET", "/v9/nothing/"), 404)

    # 409: an idempotency key reused with another body
    first = api.call(
        "POST", "/v3/memories/add/", json={"messages": "a", "user_id": "e"}, headers={"Idempotency-Key": "k"}
    )
    assert first.status_code == 200
    reused = api.call(
        "POST", "/v3/memories/add/", json={"messages": "b", "user_id": "e"}, headers={"Idempotency-Key": "k"}
    )
    assert assert_error(reused, 409, "conflict")["details"]["event_id"] == first.json()["event_id"]

    # 413: over the body limit, with and without Content-Length
    big = {"messages": "x" * 30_000, "user_id": "e"}
    assert_error(api.call("POST", "/v3/memories/add/", json=big), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        yield b'{"messages": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'", "user_id": "e"}'

    chunked = api.call(
        "POST", "/v3/memories/add/", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(chunked, 413)

    # 422: each names the offending field
    assert (
        assert_error(api.call("POST", "/v3/memories/add/", json={"user_id": "e"}), 422)["details"]["field"]
        == "messages"
    )
    err = assert_error(
        api.call("POST", "/v3/memories/search/", json={"query": "q", "user_id": "e", "top_k": 0}), 422
    )
    assert err["details"]["field"] == "top_k"
    bad_content = {"messages": [{"role": "user", "content": 5}], "user_id": "e"}
    assert (
        "messages[0].content"
        in assert_error(api.call("POST", "/v3/memories/add/", json=bad_content), 422)["details"]["field"]
    )
    fb = api.call("POST", "/v1/feedback/", json={"memory_id": memory_id, "feedback": "MEH"})
    assert assert_error(fb, 422)["details"]["field"] == "feedback"
    assert (
        assert_error(api.call("DELETE", "/v2/entities/planet/x/"), 422)["details"]["field"] == "entity_type"
    )

    # 429: a project over its own limit, with Retry-After
    limited = make_key(srv.state_path, "org-e", "proj-limited", rate_limit=3)[0]
    statuses = []
    for _ in range(5):
        response = httpx.get(srv.url + "/v1/ping/", headers={"Authorization": f"Token {limited}"})
        statuses.append(response.status_code)
    assert statuses[:3] == [200, 200, 200] and statuses[-1] == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert_error(response, 429, "rate_limited")
    assert api.call("GET", "/v1/ping/").status_code == 200  # other projects are not limited


def test_server_failure_is_a_json_500(srv: ServerProcess, tmp_path: Path) -> None:
    """A second server on the same data with an embedder of another dimension cannot read the store."""
    key = make_key(srv.state_path, "org-e", "proj-500")[0]
    Api(srv, key).add("Written with 64-dimensional vectors", user_id="e")
    broken = ServerProcess(srv.home, memory_config={"embedder": {"provider": "fake", "config": {"dim": 32}}})
    broken.start()
    try:
        response = httpx.post(
            broken.url + "/v3/memories/search/",
            headers={"Authorization": f"Token {key}"},
            json={"query": "vectors", "user_id": "e"},
        )
        error = assert_error(response, 500)
        assert "Traceback" not in response.text and 'File "' not in response.text
        assert error["code"] in ("embedder_mismatch", "store_error", "internal_error")
    finally:
        broken.stop()
    time.sleep(0)


def test_our_clients_raise_typed_errors(srv: ServerProcess) -> None:
    from engram import MemoryClient
    from engram.client import AuthenticationError, PermissionDeniedError, RequestTooLargeError
    from engram.errors import NotFoundError, RateLimitedError, ScopeRequiredError, ValidationError

    with pytest.raises(AuthenticationError):
        MemoryClient(api_key="eg-wrong", host=srv.url)
    key = make_key(srv.state_path, "org-t", "proj-t")[0]
    with MemoryClient(api_key=key, host=srv.url) as client:
        with pytest.raises(NotFoundError):
            client.get(MISSING)
        with pytest.raises(ScopeRequiredError):
            client.delete_all()
        with pytest.raises(ValidationError) as bad:
            client.search("q", user_id="t", top_k=0)
        assert bad.value.field == "top_k"
        with pytest.raises(RequestTooLargeError):
            client.add("z" * 30_000, user_id="t")
    with (
        MemoryClient(
            api_key=make_key(srv.state_path, "org-t", "proj-t", read_only=True)[0], host=srv.url
        ) as ro,
        pytest.raises(PermissionDeniedError),
    ):
        ro.add("nope", user_id="t")
    limited = make_key(srv.state_path, "org-t", "proj-t-limited", rate_limit=2)[0]
    with (
        MemoryClient(api_key=limited, host=srv.url) as client,
        pytest.raises(RateLimitedError) as limited_error,
    ):
        for _ in range(5):
            client.get_all(user_id="t")
    assert limited_error.value.details["retry_after"] >= 1
