"""A hostile client's table of malformed requests, over real HTTP, on SQLite and PostgreSQL state.

Each request must answer its 4xx with a JSON error naming the field (and the limit for a 413), and
none may store or queue anything. Afterwards the same keep-alive connection still works.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "server"))
from srvhelpers import ServerProcess, drop_state_schema, make_key_on, start_on_state, stored_counts

pytestmark = pytest.mark.slow
MID = "00000000-0000-0000-0000-000000000000"
LONG_ID = "i" * 300
SURROGATE = '"\\ud800"'  # a lone surrogate, as JSON text


def nested(levels: int, leaf: Any, key: str = "k") -> Any:
    for _ in range(levels):
        leaf = {key: leaf}
    return leaf


def nested_logic(op: str, levels: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"user_id": "u"}
    for _ in range(levels):
        tree = {op: [tree]}
    return tree


def add(**body: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "fine"}], "user_id": "u", **body}


def msg(**fields: Any) -> dict[str, Any]:
    return add(messages=[{"role": "user", "content": "fine", **fields}])


A, S, L = "/v3/memories/add/", "/v3/memories/search/", "/v3/memories/"
Q = {"query": "q", "user_id": "u"}
CASES: list[tuple[str, str, str, dict[str, Any], int]] = [
    # -- add: messages ---------------------------------------------------------------------------
    ("empty string", "POST", A, {"json": add(messages="")}, 422),
    ("empty content", "POST", A, {"json": msg(content="")}, 422),
    ("whitespace content", "POST", A, {"json": msg(content="  \n\t ")}, 422),
    ("all turns blank", "POST", A, {"json": add(messages=[{"content": " "}, {"content": ""}])}, 422),
    ("unknown role", "POST", A, {"json": msg(role="villain")}, 422),
    ("role not a string", "POST", A, {"json": msg(role=5)}, 422),
    ("content a number", "POST", A, {"json": msg(content=5)}, 422),
    ("content null", "POST", A, {"json": msg(content=None)}, 422),
    ("no messages", "POST", A, {"json": add(messages=[])}, 422),
    ("messages a number", "POST", A, {"json": add(messages=5)}, 422),
    ("message not an object", "POST", A, {"json": add(messages=[5])}, 422),
    (
        "too many messages",
        "POST",
        A,
        {"json": add(messages=[{"content": f"m{i}"} for i in range(1001)])},
        413,
    ),
    ("message too long", "POST", A, {"json": add(messages="x" * 1_000_001)}, 413),
    ("name empty", "POST", A, {"json": msg(name="")}, 422),
    ("name with NUL", "POST", A, {"json": msg(name="a\x00b")}, 422),
    ("content with NUL", "POST", A, {"json": msg(content="a\x00b")}, 422),
    (
        "content lone surrogate",
        "POST",
        A,
        {
            "content": f'{{"messages": {SURROGATE}, "user_id": "u"}}'.encode(),
            "headers": {"Content-Type": "application/json"},
        },
        422,
    ),
    # -- add: metadata, ids, other fields ----------------------------------------------------------
    ("metadata 300 levels", "POST", A, {"json": add(metadata=nested(300, 1))}, 413),
    ("metadata 70 levels", "POST", A, {"json": add(metadata=nested(70, 1))}, 413),
    ("metadata 300 keys", "POST", A, {"json": add(metadata={f"k{i}": i for i in range(300)})}, 413),
    ("metadata a string", "POST", A, {"json": add(metadata="x")}, 422),
    ("metadata NUL value", "POST", A, {"json": add(metadata={"k": "a\x00"})}, 422),
    ("metadata too big", "POST", A, {"json": add(metadata={"k": "v" * 70_000})}, 413),
    ("user_id empty", "POST", A, {"json": add(user_id="")}, 422),
    ("user_id blank", "POST", A, {"json": add(user_id="   ")}, 422),
    ("user_id too long", "POST", A, {"json": add(user_id=LONG_ID)}, 413),
    ("user_id NUL", "POST", A, {"json": add(user_id="a\x00")}, 422),
    ("user_id a number", "POST", A, {"json": add(user_id=5)}, 422),
    ("no scope", "POST", A, {"json": {"messages": "hello"}}, 400),
    ("timestamp words", "POST", A, {"json": add(timestamp="yesterday")}, 422),
    ("timestamp huge", "POST", A, {"json": add(timestamp=1e20)}, 422),
    ("expiration words", "POST", A, {"json": add(expiration_date="tomorrow")}, 422),
    ("infer not a bool", "POST", A, {"json": add(infer="maybe")}, 422),
    ("prompt too long", "POST", A, {"json": add(prompt="p" * 100_001)}, 413),
    ("idempotency key too long", "POST", A, {"json": add(), "headers": {"Idempotency-Key": "k" * 300}}, 422),
    ("not JSON", "POST", A, {"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 400),
    ("JSON array body", "POST", A, {"json": [1, 2]}, 422),
    ("body over max_body_bytes", "POST", A, {"json": add(messages="y" * 2_100_000)}, 413),
    # -- search and list ---------------------------------------------------------------------------
    ("query empty", "POST", S, {"json": {**Q, "query": ""}}, 422),
    ("query missing", "POST", S, {"json": {"user_id": "u"}}, 422),
    ("query too long", "POST", S, {"json": {**Q, "query": "q" * 10_001}}, 413),
    ("query NUL", "POST", S, {"json": {**Q, "query": "a\x00"}}, 422),
    ("top_k zero", "POST", S, {"json": {**Q, "top_k": 0}}, 422),
    ("top_k over max_page_size", "POST", S, {"json": {**Q, "top_k": 5000}}, 422),
    ("top_k text", "POST", S, {"json": {**Q, "top_k": "many"}}, 422),
    ("threshold 2", "POST", S, {"json": {**Q, "threshold": 2}}, 422),
    ("NOT 200 levels (search)", "POST", S, {"json": {**Q, "filters": nested_logic("NOT", 200)}}, 413),
    ("AND 200 levels (search)", "POST", S, {"json": {**Q, "filters": nested_logic("AND", 200)}}, 413),
    ("OR 40 levels (search)", "POST", S, {"json": {**Q, "filters": nested_logic("OR", 40)}}, 413),
    ("600 conditions", "POST", S, {"json": {**Q, "filters": {"OR": [{"k": i} for i in range(600)]}}}, 413),
    ("filters a string", "POST", S, {"json": {**Q, "filters": "user_id=u"}}, 422),
    ("unknown operator", "POST", S, {"json": {**Q, "filters": {"k": {"regex": "x"}}}}, 422),
    ("NOT 40 levels (list)", "POST", L, {"json": {"filters": nested_logic("NOT", 40)}}, 413),
    ("page zero", "POST", L, {"json": {"user_id": "u", "page": 0}}, 422),
    ("page_size over max", "POST", L, {"json": {"user_id": "u", "page_size": 5000}}, 422),
    ("page huge", "POST", L + "?page=99999999999999999999", {"json": {"user_id": "u"}}, 422),
    # -- one memory --------------------------------------------------------------------------------
    ("memory id too long", "GET", f"/v1/memories/{LONG_ID}/", {}, 413),
    ("update text too long", "PUT", f"/v1/memories/{MID}/", {"json": {"text": "t" * 1_000_001}}, 413),
    ("update text empty", "PUT", f"/v1/memories/{MID}/", {"json": {"text": ""}}, 422),
    ("update text blank", "PUT", f"/v1/memories/{MID}/", {"json": {"text": "   "}}, 422),
    ("update nothing", "PUT", f"/v1/memories/{MID}/", {"json": {}}, 422),
    ("update text NUL", "PUT", f"/v1/memories/{MID}/", {"json": {"text": "a\x00"}}, 422),
    ("update metadata deep", "PUT", f"/v1/memories/{MID}/", {"json": {"metadata": nested(100, 1)}}, 413),
    ("history id too long", "GET", f"/v1/memories/{LONG_ID}/history/", {}, 413),
    ("delete-all blank id", "DELETE", "/v1/memories/", {"params": {"user_id": " "}}, 422),
    # -- events, webhooks, exports, entities, batches, feedback --------------------------------------
    ("event id too long", "GET", f"/v1/event/{LONG_ID}/", {}, 413),
    ("events page_size 0", "GET", "/v1/events/", {"params": {"page_size": 0}}, 422),
    ("events bad status", "GET", "/v1/events/", {"params": {"status": "BOGUS"}}, 422),
    ("events page huge", "GET", "/v1/events/", {"params": {"page": 10**20}}, 422),
    ("webhook id huge", "PUT", "/api/v1/webhooks/99999999999999999999999/", {"json": {"name": "x"}}, 422),
    ("webhook id negative", "GET", "/api/v1/webhooks/-1/deliveries/", {}, 422),
    ("webhook id text", "DELETE", "/api/v1/webhooks/abc/", {}, 422),
    (
        "export id surrogate",
        "POST",
        "/v1/exports/get/",
        {
            "content": f'{{"memory_export_id": {SURROGATE}}}'.encode(),
            "headers": {"Content-Type": "application/json"},
        },
        422,
    ),
    ("export id too long", "POST", "/v1/exports/get/", {"json": {"memory_export_id": LONG_ID}}, 413),
    ("entity type unknown", "DELETE", "/v2/entities/planet/x/", {}, 422),
    ("entity name too long", "DELETE", f"/v2/entities/user/{LONG_ID}/", {}, 413),
    ("batch empty", "PUT", "/v1/batch/", {"json": {"memories": []}}, 422),
    ("batch too many", "DELETE", "/v1/batch/", {"json": {"memories": [{"memory_id": MID}] * 1001}}, 422),
    ("batch id empty", "DELETE", "/v1/batch/", {"json": {"memories": [{"memory_id": ""}]}}, 422),
    ("batch no change", "PUT", "/v1/batch/", {"json": {"memories": [{"memory_id": MID}]}}, 422),
    ("feedback unknown", "POST", "/v1/feedback/", {"json": {"memory_id": MID, "feedback": "MEH"}}, 422),
]
WEBHOOK_CASES: list[tuple[str, dict[str, Any], int]] = [
    ("webhook name NUL", {"name": "a\x00b", "url": "http://127.0.0.1:9/"}, 422),
    ("webhook name empty", {"name": "", "url": "http://127.0.0.1:9/"}, 422),
    ("webhook url ftp", {"name": "h", "url": "ftp://127.0.0.1/"}, 422),
    ("webhook event type", {"name": "h", "url": "http://127.0.0.1:9/", "event_types": ["nope"]}, 422),
]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hostile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str, str]]:
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    srv = start_on_state(
        tmp_path_factory.mktemp(f"hostile-{request.param}"), request.param, pg_url, worker_tasks=0
    )
    key, _, project_id = make_key_on(srv, "org-h", "proj-h")
    try:
        yield srv, key, project_id
    finally:
        srv.stop()
        drop_state_schema(srv, pg_url)


def assert_refused(response: httpx.Response, status: int, name: str) -> None:
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}, name
    assert response.headers.get("x-request-id"), name
    if status in (413, 422) and body["error"]["code"] != "payload_too_large":
        assert body["error"]["details"].get("field"), f"{name}: no field in {body}"
    if body["error"]["code"] == "limit_exceeded":
        assert body["error"]["details"]["limit"] in body["error"]["message"], name
    assert "Traceback" not in response.text and "/" not in body["error"]["message"].replace("/v", ""), name


def test_malformed_requests_are_refused_and_store_nothing(hostile: tuple[ServerProcess, str, str]) -> None:
    srv, key, project_id = hostile
    assert len(CASES) + len(WEBHOOK_CASES) >= 60
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Token {key}"}, timeout=60) as http:
        ok = http.post(A, json={**add(), "async_mode": False})
        assert ok.status_code == 200, ok.text
        before = stored_counts(srv, key)
        for name, method, path, kw, status in CASES:
            assert_refused(http.request(method, path, **kw), status, name)
        hooks = f"/api/v1/webhooks/projects/{project_id}/"
        for name, body, status in WEBHOOK_CASES:
            assert_refused(http.post(hooks, json=body), status, name)
        assert http.get(hooks).json() == []
        assert stored_counts(srv, key) == before
        # the same keep-alive connection still answers
        assert http.get("/v1/ping/").status_code == 200


def test_an_unexpected_error_is_a_logged_json_500_on_a_kept_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a handler: generic JSON 500 with a request id that the log shows; the socket stays open."""
    import asyncio
    import socket
    import threading
    import time

    import uvicorn
    from srvhelpers import free_port, make_key

    from engram.memory import AsyncMemory
    from engram.server.app import create_app
    from engram.server.settings import ServerSettings

    settings = ServerSettings(
        home=tmp_path, memory_config={"embedder": {"provider": "fake"}, "llm_from_env": False}, worker_tasks=0
    )
    key = make_key(settings.resolved_state_path(), "o", "p")[0]

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals at /srv/engram/data.db")

    monkeypatch.setattr(AsyncMemory, "search", boom)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        body = b'{"query": "q", "user_id": "u"}'
        request = (
            b"POST /v3/memories/search/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Token {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        ping = f"GET /v1/ping/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token {key}\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)
            first = read_response(sock)
            sock.sendall(ping)  # the same connection
            second = read_response(sock)
    finally:
        server.should_exit = True
        thread.join(30)
    head, _, payload = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and b"connection: close" not in head.lower()
    assert b"secret" not in payload and b"Traceback" not in payload
    request_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-request-id")
    )
    assert f"request id {request_id}" in payload.decode()
    assert second.startswith(b"HTTP/1.1 200")
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


def read_response(sock: Any) -> bytes:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
