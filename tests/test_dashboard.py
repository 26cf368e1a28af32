"""The dashboard's guards over real HTTP to `engram serve`: sessions, CSRF, escaping, tenancy; plus its
filter box and session signing as units."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "server"))
from dashhelpers import SCRIPT_TEXT, Site, csrf_of, running_site, sign_in
from srvhelpers import free_port, make_key

from engram import AsyncMemory
from engram.dashboard.data import ListQuery, entity_rows, list_memories, search_memories
from engram.dashboard.filterlang import parse_filter_box
from engram.dashboard.security import Signer, csrf_ok, new_session
from engram.embedders.fake import FakeEmbedder
from engram.errors import FilterError
from engram.interfaces import Store

PAGES = ["/", "/memories", "/memories?q=movies", "/entities", "/entities/user/alice", "/events", "/settings"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("dash-http")) as running:
        yield running


def test_no_page_without_a_session(site: Site) -> None:
    with httpx.Client(base_url=site.url) as anonymous:
        memory_id = str(site.memories(user_id="bob")[0]["id"])
        for path in [*PAGES, f"/memories/{memory_id}"]:
            answer = anonymous.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=")
            page = anonymous.get(answer.headers["location"])
            assert "Sign in with an API key" in page.text
            assert "peanuts" not in page.text and "sci-fi" not in page.text
        # a forged cookie is no session either
        anonymous.cookies.set("engram_session", "eyJjIjoieCIsImsiOiJ5IiwidCI6MX0.forged")
        assert anonymous.get("/memories").status_code == 303


def test_wrong_key_cannot_sign_in(site: Site) -> None:
    with httpx.Client(base_url=site.url) as client:
        token = csrf_of(client.get("/login").text)
        answer = client.post("/login", data={"csrf_token": token, "api_key": "eg-not-a-key"})
        assert answer.status_code == 401
        assert "not valid" in answer.text
        assert client.get("/memories").status_code == 303


def test_forms_without_the_csrf_token_are_refused(site: Site) -> None:
    target = next(m for m in site.memories(user_id="bob") if "peanuts" in str(m["memory"]))
    with sign_in(site.url, site.key_a) as client:
        for data in ({}, {"csrf_token": "guessed"}):
            answer = client.post(f"/memories/{target['id']}/delete", data=data)
            assert answer.status_code == 403
            assert "security token is missing or stale" in answer.text
        answer = client.post("/settings/keys", data={"name": "sneaky"})
        assert answer.status_code == 403
        # the login form is protected too
        with httpx.Client(base_url=site.url) as fresh:
            assert fresh.post("/login", data={"api_key": site.key_a}).status_code == 403
        assert "sneaky" not in client.get("/settings").text
    assert any(m["id"] == target["id"] for m in site.memories(user_id="bob"))


def test_html_in_memory_text_is_escaped(site: Site) -> None:
    with sign_in(site.url, site.key_a) as client:
        page = client.get("/memories", params={"filter": "user:bob"}).text
    assert SCRIPT_TEXT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; is what bob typed" in page


def test_session_cookie_is_httponly_strict_and_sees_one_project(site: Site) -> None:
    with httpx.Client(base_url=site.url) as client:
        token = csrf_of(client.get("/login").text)
        answer = client.post("/login", data={"csrf_token": token, "api_key": site.key_b})
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert site.key_b not in cookie
        page = client.get("/memories").text
        assert "0 memories" in page and "peanuts" not in page
        alice = str(site.memories(user_id="alice")[0]["id"])
        assert client.get(f"/memories/{alice}").status_code == 404


def test_read_only_key_cannot_change_anything(site: Site, tmp_path: Path) -> None:
    from srvhelpers import make_key

    key, _, _ = make_key(site.server.state_path, "acme", "movies", read_only=True)
    target = site.memories(user_id="bob")[0]
    with sign_in(site.url, key) as client:
        page = client.get(f"/memories/{target['id']}").text
        assert "read-only" in page and "Delete this memory" not in page
        answer = client.post(f"/memories/{target['id']}/delete", data={"csrf_token": csrf_of(page)})
        assert answer.status_code == 403 and "read-only" in answer.text
    assert any(m["id"] == target["id"] for m in site.memories(user_id="bob"))


def test_searches_through_the_api_show_on_the_overview(site: Site) -> None:
    with site.api() as api:
        for _ in range(3):
            api.post("/v3/memories/search/", json={"query": "seats", "user_id": "bob"}).raise_for_status()
    with sign_in(site.url, site.key_a) as client:
        page = client.get("/").text
    today = time.strftime("%m-%d", time.gmtime())
    assert f"<title>{today}: 3</title>" in page  # the searches chart's bar for today
    assert "Searches per day" in page and "Memories added per day" in page


def test_overview_shows_how_to_connect_an_mcp_client(site: Site) -> None:
    with sign_in(site.url, site.key_a) as client:
        page = client.get("/").text
    url = f"{site.url}/mcp"
    assert "Connect an MCP client" in page and f"<code>{url}</code>" in page
    assert f"claude mcp add --transport http engram {url} --header" in page
    assert f"engram mcp config cursor --http {url} --key YOUR_API_KEY" in page
    with site.api() as api:  # the advertised endpoint answers MCP with this project's key
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        answer = api.post(url, json=hello, headers={"Accept": "application/json, text/event-stream"})
    assert answer.status_code == 200 and "engram" in answer.text.lower()


def test_webhooks_project_settings_export_and_import(site: Site) -> None:
    with sign_in(site.url, site.key_a) as client:
        token = csrf_of(client.get("/settings").text)
        hook = {
            "csrf_token": token,
            "name": "crm",
            "url": "http://127.0.0.1:9/hook",
            "event_types": "memory_add",
        }
        answer = client.post("/settings/webhooks", data=hook, follow_redirects=True)
        assert "Webhook crm created; its signing secret is" in answer.text
        hook_id = re.search(r'action="/settings/webhooks/(\d+)/test"', answer.text).group(1)  # type: ignore[union-attr]
        edit = {"csrf_token": token, "name": "crm-2", "url": "http://127.0.0.1:9/hook", "is_active": "1"}
        page = client.post(f"/settings/webhooks/{hook_id}", data=edit, follow_redirects=True).text
        assert "Webhook crm-2 saved." in page
        bad = client.post("/settings/webhooks", data={**hook, "url": "ftp://x"}, follow_redirects=True).text
        assert "must be an http(s) URL" in bad
        test = f"/settings/webhooks/{hook_id}/test"
        page = client.post(test, data={"csrf_token": token}, follow_redirects=True).text
        assert "Test delivery to http://127.0.0.1:9/hook queued" in page
        deadline = time.monotonic() + 15
        while "ConnectError" not in (page := client.get("/settings").text) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "ConnectError" in page  # the test delivery's outcome is listed
        edit.pop("is_active")
        page = client.post(f"/settings/webhooks/{hook_id}", data=edit, follow_redirects=True).text
        assert '<code>http://127.0.0.1:9/hook</code> <span class="badge">paused' in page
        page = client.post(test, data={"csrf_token": token}, follow_redirects=True).text
        assert "Webhook crm-2 is paused" in page
        settings = {
            "csrf_token": token,
            "custom_instructions": "Keep food facts",
            "custom_categories": '["food"]',
        }
        page = client.post("/settings/project", data=settings, follow_redirects=True).text
        assert "Project settings saved." in page and "Keep food facts" in page
        exported = client.post(
            "/memories/bulk",
            data={"csrf_token": token, "action": "export_matching", "filter": "user:bob topic=food"},
        )
        assert exported.headers["content-disposition"].startswith("attachment")
        document = exported.json()
        assert [m["memory"] for m in document["memories"]] == ["Bob is allergic to peanuts"]
        line = document["memories"][0]  # `engram export`'s line: history and sources included
        assert [h["event"] for h in line["history"]] == ["ADD"] and line["user_id"] == "bob"
        assert "sources" in line and line["metadata"]["topic"] == "food"
    with site.api() as api:
        assert api.post("/v1/exports/get/", json={"memory_export_id": document["id"]}).status_code == 200
        api.post("/v1/exports/", json={"filters": {"user_id": "bob", "topic": "food"}}).raise_for_status()
        by_api = api.post("/v1/exports/get/", json={}).json()["memories"]
    assert by_api == document["memories"]  # the dashboard and /v1/exports/ write the same lines
    with sign_in(site.url, site.key_b) as other:
        token = csrf_of(other.get("/settings").text)
        files = {"file": ("export.json", json.dumps(document), "application/json")}
        page = other.post("/settings/import", data={"csrf_token": token}, files=files, follow_redirects=True)
        assert "Imported 1 memories (0 skipped: already there or unusable)." in page.text
        assert "Bob is allergic to peanuts" in other.get("/memories").text


def test_selected_rows_export_and_delete(site: Site) -> None:
    with site.api() as api:
        body = {"messages": "Eve keeps bees", "user_id": "eve", "infer": False, "async_mode": False}
        api.post("/v3/memories/add/", json=body).raise_for_status()
        body = {**body, "messages": "Eve sells honey"}
        api.post("/v3/memories/add/", json=body).raise_for_status()
    ids = [str(m["id"]) for m in site.memories(user_id="eve")]
    with sign_in(site.url, site.key_a) as client:
        token = csrf_of(client.get("/memories").text)
        form = {"csrf_token": token, "ids": ids, "back_query": "filter=user%3Aeve"}
        exported = client.post("/memories/bulk", data={**form, "action": "export"}).json()
        assert sorted(m["memory"] for m in exported["memories"]) == ["Eve keeps bees", "Eve sells honey"]
        nothing = client.post(
            "/memories/bulk", data={**form, "ids": [], "action": "delete"}, follow_redirects=True
        )
        assert "Select at least one memory first." in nothing.text
        page = client.post("/memories/bulk", data={**form, "action": "delete"}, follow_redirects=True)
        assert "Deleted 2 memories." in page.text and "0 memories" in page.text
    assert site.memories(user_id="eve") == []


def test_engram_ui_shows_the_quickstart_memories(tmp_path: Path) -> None:
    env = {**os.environ, "ENGRAM_HOME": str(tmp_path)}
    env.pop("ENGRAM_DATABASE_URL", None)
    cli = [sys.executable, "-m", "engram.cli"]
    subprocess.run([*cli, "quickstart"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    log = open(tmp_path / "ui.log", "wb")  # noqa: SIM115 - closed below
    ui = subprocess.Popen([*cli, "ui", "--no-browser", "--port", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    page = client.get("/memories")
                    break
                except httpx.TransportError:
                    assert ui.poll() is None and time.monotonic() < deadline, (
                        tmp_path / "ui.log"
                    ).read_text()
                    time.sleep(0.2)
            assert page.status_code == 200
            assert "alice loves sci-fi movies" in page.text and "local · default" in page.text
            assert "Sign in" not in page.text  # no key needed
            overview = client.get("/").text
            assert "engram-quickstart" in overview and "SQLiteStore" in overview
            assert "claude mcp add engram -- engram mcp" in overview  # local mode: the stdio server
            foreign = client.get("/memories", headers={"Host": f"attacker.example:{port}"})
            assert foreign.status_code == 403 and "only answers on 127.0.0.1" in foreign.text
    finally:
        ui.terminate()
        ui.wait(15)
        log.close()


# -- units -------------------------------------------------------------------------------------------
def test_filter_box_compiles_to_the_filter_language() -> None:
    parsed = parse_filter_box('user:alice topic=food rating>=4 created<2024-05-01 "window seat" ~x')
    assert parsed.filters == {
        "AND": [
            {"user_id": "alice"},
            {"topic": "food"},
            {"rating": {"gte": 4}},
            {"created_at": {"lt": "2024-05-01"}},
        ]
    }
    assert parsed.words == ["window seat", "~x"]
    assert parsed.text_matches("Alice wants a WINDOW SEAT ~x") and not parsed.text_matches("aisle")
    assert parse_filter_box('{"user_id": "bob"}').filters == {"user_id": "bob"}
    assert parse_filter_box("name~Ann").filters == {"name": {"icontains": "Ann"}}
    for bad in ('"open', "{nope", "user:"):
        with pytest.raises(FilterError):
            parse_filter_box(bad)


def test_signed_sessions_refuse_tampering_and_age() -> None:
    signer = Signer(b"secret")
    session = new_session("hash")
    value = signer.dumps(session)
    loaded = signer.loads(value)
    assert loaded is not None and loaded.key_hash == "hash" and csrf_ok(loaded, session.csrf)
    assert Signer(b"other").loads(value) is None
    payload, mac = value.rsplit(".", 1)
    assert signer.loads(payload[:-2] + "xx." + mac) is None
    assert Signer(b"secret", max_age=-1).loads(value) is None
    assert not csrf_ok(loaded, "wrong") and not csrf_ok(None, session.csrf)


async def test_table_pages_sorts_and_searches_every_scope(
    store_factory: Callable[[], Store], embedder: FakeEmbedder
) -> None:
    """On both stores: the whole namespace, paged both ways, sorted, matched, searched."""
    memory = AsyncMemory(store=store_factory(), embedder=embedder)
    try:
        for i in range(30):
            user = "ann" if i % 3 else "ben"
            await memory.add(f"note {i:02d}", user_id=user, infer=False, timestamp=1_700_000_000 + i)
        newest = await list_memories(memory, ListQuery())
        assert (newest.total, newest.pages) == (30, 2)
        assert [r["memory"] for r in newest.rows[:2]] == ["note 29", "note 28"]
        second = await list_memories(memory, ListQuery(page=2))
        assert [r["memory"] for r in second.rows] == ["note 04", "note 03", "note 02", "note 01", "note 00"]
        oldest = await list_memories(memory, ListQuery(desc=False, page=2))
        assert [r["memory"] for r in oldest.rows] == ["note 25", "note 26", "note 27", "note 28", "note 29"]
        by_text = await list_memories(memory, ListQuery(sort="text", desc=False, filter="user:ben"))
        assert [r["memory"] for r in by_text.rows][:3] == ["note 00", "note 03", "note 06"]
        assert by_text.total == 10 and not by_text.capped
        words = await list_memories(memory, ListQuery(filter="user:ann 2"))
        assert sorted(r["memory"] for r in words.rows) == [
            f"note {i:02d}" for i in (2, 20, 22, 23, 25, 26, 28, 29)
        ]
        rows = await entity_rows(memory, None, None)
        assert [(r.type, r.name, r.memories) for r in rows] == [("user", "ann", 20), ("user", "ben", 10)]
        hits = await search_memories(memory, "note 07", parse_filter_box(""), ListQuery())
        assert hits[0]["memory"] == "note 07" and {h["user_id"] for h in hits} == {"ann", "ben"}
        only_ben = await search_memories(memory, "note 07", parse_filter_box("user:ben"), ListQuery())
        assert {h["user_id"] for h in only_ben} == {"ben"}
    finally:
        await memory.close()


def test_memory_page_links_supersession_both_ways(tmp_path: Path) -> None:
    """In process (a scripted LLM decides the supersession): each memory links the other."""
    from fastapi.testclient import TestClient

    from engram.llms.scripted import ScriptedLLM
    from engram.server.app import create_app
    from engram.server.settings import ServerSettings
    from engram.stores.sqlite import SQLiteStore

    def fact(text: str, supersedes: list[str]) -> str:
        item = {
            "text": text,
            "source_message_ids": ["m1"],
            "attributed_to": "alice",
            "supersedes": supersedes,
        }
        return json.dumps({"facts": [item]})

    def madrid(messages: list[dict[str, str]]) -> str:
        old = re.search(r"- (r\d+): [^\n]*Berlin", messages[-1]["content"])
        assert old is not None
        return fact("Alice lives in Madrid", [old.group(1)])

    llm = ScriptedLLM([fact("Alice lives in Berlin", []), madrid])
    engine = AsyncMemory(store=SQLiteStore(path=tmp_path / "engram.db"), embedder=FakeEmbedder(), llm=llm)
    settings = ServerSettings(home=tmp_path, worker_tasks=0, rate_limit_per_minute=0)
    key, _, _ = make_key(tmp_path / "server.db", "acme", "moves")
    with TestClient(create_app(settings, engine=engine)) as client:
        ids = []
        for text in ("I live in Berlin.", "I just moved to Madrid!"):
            body = {"messages": text, "user_id": "alice", "async_mode": False}
            answer = client.post("/v3/memories/add/", json=body, headers={"Authorization": f"Token {key}"})
            ids.append(answer.json()["results"][0]["id"])
        token = csrf_of(client.get("/login").text)
        client.post("/login", data={"csrf_token": token, "api_key": key})
        berlin = client.get(f"/memories/{ids[0]}").text
        assert "Superseded by" in berlin and f'href="/memories/{ids[1]}"' in berlin
        assert "SUPERSEDE" in berlin and "Alice lives in Madrid" in berlin
        moved = client.get(f"/memories/{ids[1]}").text
        assert "Replaced" in moved and f'<a href="/memories/{ids[0]}">Alice lives in Berlin</a>' in moved
        assert "I just moved to Madrid!" in moved  # its source message
