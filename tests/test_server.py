"""The real server in a subprocess, driven over loopback HTTP by our clients and mem0's real ones."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "server"))
from srvhelpers import ServerProcess, client_env, free_port, make_key, mem0_npm, mem0_python

from engram import AsyncMemoryClient, MemoryClient
from engram.errors import ConflictError, NotFoundError

pytestmark = pytest.mark.slow
DRIVERS = Path(__file__).parent / "server"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("server"), webhook_backoff_seconds=0.2).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(srv: ServerProcess) -> str:
    return make_key(srv.state_path, "acme", "alpha")[0]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}"}


def test_ping_and_openapi_docs(srv: ServerProcess, key: str) -> None:
    ping = httpx.get(srv.url + "/v1/ping/", headers={"Authorization": f"Bearer {key}"}).json()
    assert (
        ping["status"] == "ok"
        and ping["org_id"].startswith("org_")
        and ping["project_id"].startswith("proj_")
    )
    assert "user_email" in ping
    assert httpx.get(srv.url + "/docs").status_code == 200
    paths = httpx.get(srv.url + "/openapi.json").json()["paths"]
    for path in (
        "/v3/memories/add/",
        "/v1/memories/",
        "/v1/event/{event_id}/",
        "/v2/memories/search/",
        "/v1/batch/",
    ):
        assert path in paths


def test_our_client_full_flow(srv: ServerProcess, key: str) -> None:
    with MemoryClient(api_key=key, host=srv.url) as client:
        assert client.project_id and client.org_id
        queued = client.add("I am allergic to peanuts", user_id="u-flow", infer=False)
        assert queued["status"] == "PENDING" and queued["event_id"]
        event = client.wait_for_event(queued["event_id"], timeout=20)
        assert event["status"] == "SUCCEEDED" and event["completed_at"] and event["latency"] is not None
        first = event["results"][0]["id"]
        done = client.add("I live in Lisbon", user_id="u-flow", infer=False, wait=True, metadata={"k": 1})
        assert done["results"][0]["event"] == "ADD"
        sync = client.add("I play the cello", user_id="u-flow", infer=False, async_mode=False)
        assert sync["results"][0]["memory"] == "I play the cello"
        inferred = client.add("My favourite colour is teal", user_id="u-infer", wait=True)  # infer=True
        assert inferred["results"] and all(r["event"] == "ADD" for r in inferred["results"])
        assert client.get_all(user_id="u-infer")["count"] == len(inferred["results"])

        hits = client.search("peanuts allergy", user_id="u-flow", top_k=2)["results"]
        assert hits[0]["id"] == first and "score" in hits[0]
        page = client.get_all(user_id="u-flow", page=1, page_size=2)
        assert page["count"] == 3 and len(page["results"]) == 2 and page["next"] and page["previous"] is None
        page2 = httpx.post(page["next"], headers=auth(key), json={"filters": {"user_id": "u-flow"}}).json()
        assert len(page2["results"]) == 1 and page2["previous"]

        assert client.get(first)["memory"] == "I am allergic to peanuts"
        client.update(first, text="I am allergic to peanuts and shellfish")
        assert [h["event"] for h in client.history(first)] == ["ADD", "UPDATE"]
        events = client.list_events(page_size=100)
        assert queued["event_id"] in {e["id"] for e in events["results"]}
        client.delete(first)
        with pytest.raises(NotFoundError):
            client.get(first)
        assert client.delete_all(user_id="u-flow")["message"]
        assert client.get_all(user_id="u-flow")["count"] == 0


async def test_async_client_flow(srv: ServerProcess, key: str) -> None:
    async with AsyncMemoryClient(api_key=key, host=srv.url) as client:
        done = await client.add("Async clients work too", user_id="u-async", infer=False, wait=True)
        memory_id = done["results"][0]["id"]
        assert (await client.search("async clients", user_id="u-async"))["results"][0]["id"] == memory_id
        assert (await client.get(memory_id))["user_id"] == "u-async"
        await client.delete_all(user_id="u-async")
        assert (await client.get_all(user_id="u-async"))["count"] == 0


def test_idempotency_key_runs_once(srv: ServerProcess, key: str) -> None:
    with MemoryClient(api_key=key, host=srv.url) as client:
        a = client.add("Idempotent fact", user_id="u-idem", infer=False, idempotency_key="req-1")
        b = client.add("Idempotent fact", user_id="u-idem", infer=False, idempotency_key="req-1")
        assert a["event_id"] == b["event_id"]
        client.wait_for_event(a["event_id"])
        with pytest.raises(ConflictError):
            client.add("Another body", user_id="u-idem", infer=False, idempotency_key="req-1")
        assert client.get_all(user_id="u-idem")["count"] == 1
        assert client.list_events(page_size=1000)["count"] >= 1


def test_entities_batch_feedback_exports(srv: ServerProcess, key: str) -> None:
    with MemoryClient(api_key=key, host=srv.url) as client:
        ids = [
            client.add(text, agent_id="bot-7", infer=False, async_mode=False)["results"][0]["id"]
            for text in ("fact one", "fact two", "fact three")
        ]
        users = client.users()["results"]
        assert ("agent", "bot-7", 3) in {(u["type"], u["name"], u["total_memories"]) for u in users}
        client.batch_update([{"memory_id": ids[0], "text": "fact one, revised"}])
        assert client.get(ids[0])["memory"] == "fact one, revised"
        client.batch_delete([{"memory_id": ids[1]}])
        with pytest.raises(NotFoundError):
            client.get(ids[1])
        fb = client.feedback(ids[0], feedback="positive", feedback_reason="accurate")
        assert fb["feedback"] == "POSITIVE"
        created = client.create_memory_export({"type": "object"}, filters={"agent_id": "bot-7"})
        export = client.get_memory_export(memory_export_id=created["id"])
        assert sorted(m["memory"] for m in export["memories"]) == ["fact one, revised", "fact three"]
        client.delete_users(agent_id="bot-7")
        assert client.get_all(agent_id="bot-7")["count"] == 0
        assert "bot-7" not in {u["name"] for u in client.users()["results"]}


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    fail_first = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = 500 if type(self).fail_first and len(type(self).received) == 1 else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhooks_are_signed_and_retried(srv: ServerProcess, key: str) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        with MemoryClient(api_key=key, host=srv.url) as client:
            project = client.project_id
            url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
            hook = httpx.post(
                f"{srv.url}/api/v1/webhooks/projects/{project}/",
                headers=auth(key),
                json={"name": "test", "url": url, "event_types": ["memory_add"]},
            ).json()
            assert hook["secret"] and hook["webhook_id"]
            listed = httpx.get(f"{srv.url}/api/v1/webhooks/projects/{project}/", headers=auth(key)).json()
            assert [h["webhook_id"] for h in listed] == [hook["webhook_id"]] and "secret" not in listed[0]
            added = client.add("Webhooks fire on add", user_id="u-hook", infer=False, async_mode=False)
            deadline = time.monotonic() + 20
            while len(_Receiver.received) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(_Receiver.received) == 2, "the failed first delivery must be retried"
            headers, body = _Receiver.received[-1]
            expected = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Engram-Signature"] == expected
            payload = json.loads(body)
            assert payload["event_type"] == "memory_add"
            assert payload["event_details"]["id"] == added["results"][0]["id"]
            deliveries = httpx.get(
                f"{srv.url}/api/v1/webhooks/{hook['webhook_id']}/deliveries/", headers=auth(key)
            ).json()
            assert [d["status_code"] for d in deliveries] == [500, 200]
            # updates are not subscribed; after unsubscribing nothing more arrives
            client.update(added["results"][0]["id"], text="changed")
            upd = httpx.put(
                f"{srv.url}/api/v1/webhooks/{hook['webhook_id']}/",
                headers=auth(key),
                json={"is_active": False},
            )
            assert upd.status_code == 200 and upd.json()["is_active"] is False
            client.add("No webhook now", user_id="u-hook", infer=False, async_mode=False)
            time.sleep(0.5)
            assert len(_Receiver.received) == 2
            gone = httpx.delete(f"{srv.url}/api/v1/webhooks/{hook['webhook_id']}/", headers=auth(key))
            assert gone.status_code == 200
    finally:
        receiver.shutdown()


def test_cli_keys_create_list_revoke(srv: ServerProcess) -> None:
    engram = shutil.which("engram", path=str(Path(sys.executable).parent))
    assert engram, "the engram console script is installed with the package"
    env = srv.env()
    made = subprocess.run(
        [engram, "keys", "create", "--org", "cli-org", "--project", "cli-proj"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    new_key = made.stdout.strip()
    assert new_key.startswith("eg-")
    assert httpx.get(srv.url + "/v1/ping/", headers=auth(new_key)).status_code == 200
    listing = subprocess.run(
        [engram, "keys", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert new_key not in listing and new_key[:10] in listing and "cli-org/cli-proj" in listing
    key_id = next(line.split()[0] for line in listing.splitlines() if new_key[:10] in line)
    subprocess.run([engram, "keys", "revoke", key_id], env=env, check=True, capture_output=True)
    time.sleep(2.2)  # the server caches key lookups for 2 s
    assert httpx.get(srv.url + "/v1/ping/", headers=auth(new_key)).status_code == 401


@pytest.mark.parametrize("line", ["v2", "v1"])
def test_mem0_python_client(srv: ServerProcess, key: str, line: str, tmp_path: Path) -> None:
    python = mem0_python({"v2": "2.2.1", "v1": "1.0.11"}[line])
    proc = subprocess.run(
        [str(python), str(DRIVERS / "mem0_py_driver.py"), srv.url, key, f"u-mem0-{line}"],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["line"] == ("2.x" if line == "v2" else "1.x")
    assert out["org_id"] and out["project_id"]
    assert out["event"]["status"] == "SUCCEEDED" and out["event"]["event_type"] == "ADD"
    assert out["search"][0][0] == "I love science fiction movies"
    assert out["list_count"] == 2
    assert out["paged"] == {"count": 2, "n": 1, "next": out["paged"]["next"]} and out["paged"]["next"]
    assert out["get"]["user_id"] == f"u-mem0-{line}" and out["get"]["metadata"] == {"source": "driver"}
    assert out["history"] == ["ADD", "UPDATE"]
    assert ("user", f"u-mem0-{line}", 2) in [tuple(u) for u in out["users"]]
    assert out["missing"] != "no error"
    assert out["batch_update"].startswith("Successfully updated") and out["batch_delete"]
    assert out["export"] == 2 and out["webhooks"] == ["driver"]
    assert out.get("feedback", "NEGATIVE") == "NEGATIVE"
    assert out["project"] == {"custom_instructions": "Keep only durable preferences."}
    assert out["after_delete_count"] == 1 and out["final_count"] == 0


def test_mem0_npm_client(srv: ServerProcess, key: str, tmp_path: Path) -> None:
    project = mem0_npm()
    driver = project / "driver.mjs"
    shutil.copy(DRIVERS / "mem0_npm_driver.mjs", driver)
    proc = subprocess.run(
        ["node", str(driver), srv.url, key, "u-npm"],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["add"]["status"] == "PENDING" and out["eventStatus"] == "SUCCEEDED"
    assert out["search"][0] == ["I drink green tea every morning", True]
    assert out["listCount"] == 1 and out["get"] == "I drink green tea every morning"
    assert out["history"] == ["ADD"]
    assert ["user", "u-npm", 1] in out["users"] and out["feedback"] == "POSITIVE"
    assert out["webhooks"] == [["n", ["memory_add"]]] and out["webhooksAfter"] == 0
    assert out["afterDelete"] == 0 and out["finalCount"] == 0
    assert out["missing"] != "no error"
    assert out["profileSettings"] == [True, "Be brief."] and out["profileSettingsGet"] is True
    assert out["profileJob"] == "succeeded" and out["profile"] == ["succeeded", "u-npm", 6]
    assert len(out["sample"][0]) == 1 and out["sample"][1] == "user"  # one of the server's users
    assert out["project"] == {"customInstructions": "Durable facts only."}
    assert out["batchUpdate"].startswith("Successfully updated") and out["batchDelete"]
    assert out["export"] == 1 and out["deleteUser"] and out["deleteUsers"]
