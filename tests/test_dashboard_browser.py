"""The dashboard in a real browser (Playwright driving Debian's chromium) against `engram serve`.

Every test asserts on what the page shows. Without /usr/bin/chromium the module skips, except with
CI=true, where it fails.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "server"))
from dashhelpers import CHROMIUM, CHROMIUM_ARGS, SCRIPT_TEXT, Site, failing_add, in_ci, running_site

if not CHROMIUM.exists():
    if in_ci():
        raise RuntimeError(f"CI: {CHROMIUM} is missing; scripts/test.sh installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is not installed (scripts/test.sh installs it)", allow_module_level=True)
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    if in_ci():
        raise
    pytest.skip("playwright is not installed (the dev extra)", allow_module_level=True)

TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("dash-browser")) as running:
        yield running


@pytest.fixture(scope="module")
def failed_event(site: Site) -> str:
    return failing_add(site)


@pytest.fixture(scope="module")
def browser(site: Site, failed_event: str) -> Iterator[Browser]:
    # after the site: Playwright's sync API keeps an event loop running in this thread
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []
    opened = context.new_page()
    opened.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    opened.dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Page, site: Site, key: str | None = None) -> None:
    page.goto(site.url + "/memories")
    expect(page.get_by_text("Sign in with an API key")).to_be_visible()
    page.get_by_label("API key").fill(key or site.key_a)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Memories")).to_be_visible()


def apply(page: Page, *, filter: str | None = None, search: str | None = None) -> None:
    """Fill the memories page's filter and/or search box and apply."""
    if filter is not None:
        page.get_by_label("Filter").fill(filter)
    if search is not None:
        page.get_by_label("Search").fill(search)
    page.get_by_role("button", name="Apply").click()


def test_sign_in_overview_and_sign_out(page: Page, site: Site) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".stat", has_text="current memories")).to_contain_text(str(len(_all(site))))
    expect(page.get_by_text("acme / movies")).to_be_visible()
    users = page.get_by_role("row", name=re.compile("users"))
    expect(users).to_contain_text("alice")
    expect(users).to_contain_text("bob")
    expect(page.get_by_text("Memories added per day")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Signed out.")).to_be_visible()
    page.goto(site.url + "/settings")
    expect(page.get_by_text("Sign in with an API key")).to_be_visible()


def test_search_shows_scores_and_explains(page: Page, site: Site) -> None:
    sign_in(page, site)
    apply(page, search="window seats on flights")
    expect(page.get_by_text(re.compile(r"\d+ results? for"))).to_be_visible()
    first = page.locator("table.memories tbody tr").first
    expect(first).to_contain_text("Bob prefers window seats on long flights")
    expect(first.locator("td.score")).to_have_text(re.compile(r"0\.\d{3}"))
    first.get_by_role("button", name="why?").click()
    expect(first.locator(".breakdown")).to_contain_text("Final score")
    expect(first.locator(".breakdown")).to_contain_text("Keyword")


def test_filter_sort_and_page_the_table(page: Page, site: Site) -> None:
    sign_in(page, site)
    apply(page, filter="user:bob topic=food")
    expect(page.get_by_text("1 memory", exact=True)).to_be_visible()
    rows = page.locator("table.memories tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Bob is allergic to peanuts")
    apply(page, filter="user:bob")
    expect(rows).to_have_count(3)
    page.get_by_role("link", name="Memory").click()  # sort by text, descending
    expect(rows.first).to_contain_text("Bob prefers window seats")
    page.get_by_role("link", name=re.compile("^Memory")).click()  # ascending
    expect(rows.first).to_contain_text(SCRIPT_TEXT)  # "<" sorts first
    apply(page, filter="peanuts")  # a bare word matches the text
    expect(rows).to_have_count(1)
    apply(page, filter="user:")
    expect(page.get_by_role("alert")).to_contain_text("has no value")


def test_memory_page_history_sources_edit_delete(page: Page, site: Site) -> None:
    target = next(m for m in site.memories(user_id="alice") if "sci-fi" in str(m["memory"]))
    sign_in(page, site)
    apply(page, filter="user:alice sci-fi")
    page.get_by_role("link", name=str(target["memory"])).click()
    expect(page.get_by_role("heading", name=str(target["memory"]))).to_be_visible()
    sources = page.locator("ol.messages")
    expect(sources).to_contain_text("I'm not a big fan of thriller movies, but I love sci-fi movies.")
    expect(sources).to_contain_text("alice")
    timeline = page.locator("ol.timeline")
    expect(timeline.locator("li")).to_have_count(1)
    expect(timeline).to_contain_text("ADD")
    page.get_by_label("Text").fill("alice loves sci-fi and space operas")
    page.get_by_label("Metadata (JSON object)").fill('{"checked": true}')
    page.get_by_label("Expires on (empty: never)").fill("2999-01-01")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#flash")).to_have_text("Saved.")
    expect(page.get_by_role("heading", name="alice loves sci-fi and space operas")).to_be_visible()
    expect(timeline.locator("li")).to_have_count(2)
    expect(timeline.locator("li").nth(1)).to_contain_text("UPDATE")
    expect(timeline.locator("li").nth(1)).to_contain_text("alice loves sci-fi and space operas")
    expect(page.locator("pre.json")).to_contain_text('"checked": true')
    expect(page.locator(".facts")).to_contain_text("2999-01-01")
    expect(timeline.locator("li").nth(1)).to_contain_text("expiry set to 2999-01-01")
    page.get_by_role("button", name="Delete this memory").click()  # the confirm dialog is accepted
    expect(page.locator("#flash")).to_have_text("Memory deleted.")
    expect(page.get_by_text("alice loves sci-fi and space operas")).to_have_count(0)
    page.goto(f"{site.url}/memories/{target['id']}")
    expect(page.get_by_role("heading", name="Deleted memory")).to_be_visible()
    expect(page.locator("ol.timeline li")).to_have_count(3)
    assert all(m["id"] != target["id"] for m in site.memories(user_id="alice"))


def test_create_and_revoke_a_key(page: Page, site: Site) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("New key name").fill("ci-robot")
    page.get_by_role("button", name="Create key").click()
    new_key = page.locator("#new-key").inner_text().strip()
    assert new_key.startswith("eg-")
    expect(page.get_by_text("shown once")).to_be_visible()
    with site.api(new_key) as api:
        assert api.get("/v1/ping/").json()["project_name"] == "movies"
    row = page.get_by_role("row", name=re.compile("ci-robot"))
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Revoke key ci-robot").click()
    expect(page.locator("#flash")).to_contain_text("revoked")
    expect(page.get_by_role("row", name=re.compile("ci-robot"))).to_contain_text("revoked")
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)  # shown once only
    deadline = time.monotonic() + 5  # the server caches key lookups for 2 s
    while time.monotonic() < deadline:
        with site.api(new_key) as api:
            if api.get("/v1/ping/").status_code == 401:
                break
        time.sleep(0.3)
    else:
        pytest.fail("the revoked key still works")


def test_second_project_sees_none_of_the_first(page: Page, site: Site) -> None:
    alice = _all(site)[0]
    sign_in(page, site, site.key_b)
    expect(page.get_by_text("0 memories")).to_be_visible()
    expect(page.get_by_text("No memories match.")).to_be_visible()
    apply(page, search="sci-fi movies peanuts")
    expect(page.get_by_text("0 results for")).to_be_visible()
    page.goto(f"{site.url}/memories/{alice['id']}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto(site.url + "/entities")
    expect(page.get_by_text("No memories yet.")).to_be_visible()


def test_script_in_a_memory_shows_as_text(page: Page, site: Site) -> None:
    sign_in(page, site)
    apply(page, filter="user:bob typed")
    expect(page.get_by_role("link", name=SCRIPT_TEXT)).to_be_visible()
    page.get_by_role("link", name=SCRIPT_TEXT).click()
    expect(page.get_by_role("heading", name=SCRIPT_TEXT)).to_be_visible()
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_delete_an_entity_with_typed_confirmation(page: Page, site: Site) -> None:
    with site.api() as api:
        for text in ("Carol collects stamps", "Carol lives in Lisbon"):
            body = {"messages": text, "user_id": "carol", "infer": False, "async_mode": False}
            api.post("/v3/memories/add/", json=body).raise_for_status()
    sign_in(page, site)
    page.get_by_role("link", name="Entities").click()
    page.get_by_role("link", name="carol").click()
    expect(page.locator("#entity-count")).to_contain_text("2 memories")
    page.get_by_label("Type carol to confirm").fill("carl")
    page.get_by_role("button", name="Delete 2 memories").click()
    expect(page.locator("#flash")).to_contain_text("Type the user name exactly")
    assert len(site.memories(user_id="carol")) == 2
    page.get_by_label("Type carol to confirm").fill("carol")
    page.get_by_role("button", name="Delete 2 memories").click()
    expect(page.locator("#flash")).to_have_text("Deleted 2 memories of user carol.")
    expect(page.get_by_role("link", name="carol")).to_have_count(0)
    assert site.memories(user_id="carol") == []


def test_retry_a_failed_event(page: Page, site: Site, failed_event: str) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="Overview").click()
    expect(page.locator(".stat", has_text="failed events")).to_contain_text("1")
    page.get_by_role("link", name=re.compile("failed events")).click()
    row = page.get_by_role("row", name=re.compile(failed_event[:8]))
    expect(row).to_contain_text("FAILED")
    expect(row).to_contain_text("messages")  # the error says what was wrong
    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#flash")).to_contain_text("Queued again as event")
    retried = page.locator("#flash").inner_text().rsplit(" ", 1)[-1].rstrip(".")
    with site.api() as api:
        assert api.get(f"/v1/event/{retried}/").json()["payload"] == {"user_id": "dora"}


def test_events_list_and_phone_width(browser: Browser, site: Site) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, site)
        page.get_by_role("link", name="Events").click()
        expect(page.get_by_role("heading", name="Events")).to_be_visible()
        expect(page.get_by_role("row", name=re.compile("SUCCEEDED")).first).to_contain_text("1 result")
        for path in ("/events", "/memories", "/settings", "/"):
            page.goto(site.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
        expect(page.get_by_role("link", name="Settings")).to_be_visible()
    finally:
        context.close()


def _all(site: Site) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for user in ("alice", "bob"):
        found.extend(site.memories(user_id=user))
    return found
