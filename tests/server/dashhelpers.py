"""Helpers for the dashboard tests: a live server with two projects and known memories, a signed-in client."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from srvhelpers import ServerProcess, make_key

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCRIPT_TEXT = "<script>alert(1)</script> is what bob typed"
CONVERSATION = [
    {"role": "user", "name": "alice", "content": "I'm planning to watch a movie tonight. Any ideas?"},
    {"role": "assistant", "content": "How about a thriller? They can be quite engaging."},
    {
        "role": "user",
        "name": "alice",
        "content": "I'm not a big fan of thriller movies, but I love sci-fi movies.",
    },
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class Site:
    """A running server: project A's key (with memories), project B's key (none), and A's memories."""

    server: ServerProcess
    key_a: str
    key_b: str
    project_a: str

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Token {key or self.key_a}"}, timeout=30
        )

    def memories(self, **scope: str) -> list[dict[str, object]]:
        with self.api() as api:
            answer = api.post("/v3/memories/", json={**scope, "page_size": 1000})
            answer.raise_for_status()
            return list(answer.json()["results"])


def start_site(home: Path) -> Site:
    """Start ``engram serve`` and fill project A: alice's movie talk (inferred), bob's raw notes."""
    server = ServerProcess(home)
    key_a, _, project_a = make_key(server.state_path, "acme", "movies")
    key_b, _, _ = make_key(server.state_path, "acme", "other")
    server.start()
    site = Site(server, key_a, key_b, project_a)
    with site.api() as api:
        adds = [
            {"messages": CONVERSATION, "user_id": "alice", "app_id": "cinema"},
            {
                "messages": "Bob is allergic to peanuts",
                "user_id": "bob",
                "infer": False,
                "metadata": {"topic": "food"},
            },
            {
                "messages": "Bob prefers window seats on long flights",
                "user_id": "bob",
                "infer": False,
                "metadata": {"topic": "travel"},
            },
            {"messages": SCRIPT_TEXT, "user_id": "bob", "infer": False},
        ]
        for body in adds:
            answer = api.post("/v3/memories/add/", json={**body, "async_mode": False})
            answer.raise_for_status()
    return site


@contextlib.contextmanager
def running_site(home: Path) -> Iterator[Site]:
    site = start_site(home)
    try:
        yield site
    finally:
        site.server.stop()


def failing_add(site: Site) -> str:
    """Queue an add that fails permanently (no messages), wait until it is FAILED; returns its id."""
    import asyncio

    from engram.stores.sqlite.service import SQLiteServiceState

    async def enqueue() -> str:
        state = SQLiteServiceState(path=site.server.state_path)
        await state.open()
        try:
            payload = {"request": {"user_id": "dora"}, "kwargs": {"messages": [], "user_id": "dora"}}
            return (await state.enqueue(site.project_a, "ADD", payload)).job.id
        finally:
            await state.close()

    event_id = asyncio.run(enqueue())
    deadline = time.monotonic() + 20
    with site.api() as api:
        while time.monotonic() < deadline:
            if api.get(f"/v1/event/{event_id}/").json()["status"] == "FAILED":
                return event_id
            time.sleep(0.1)
    raise AssertionError(f"event {event_id} did not fail")


@contextlib.contextmanager
def sign_in(url: str, key: str) -> Iterator[httpx.Client]:
    """An HTTP client holding a dashboard session made through the sign-in form."""
    with httpx.Client(base_url=url, timeout=30) as client:
        token = csrf_of(client.get("/login").text)
        answer = client.post("/login", data={"csrf_token": token, "api_key": key, "next": "/"})
        assert answer.status_code == 303, answer.text
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)
