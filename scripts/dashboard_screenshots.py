"""Screenshots of the dashboard's main pages for docs/dashboard.md (PNG, small).

Usage: .venv/bin/python scripts/dashboard_screenshots.py [--out docs/images] [--dark] [--phone]
Starts `engram serve` on a temporary home with demo memories, signs in with Debian's chromium
(/usr/bin/chromium, driven by Playwright) and saves one PNG per page.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "server"))

from dashhelpers import CHROMIUM, CHROMIUM_ARGS, failing_add, start_site  # noqa: E402

DEMO = [
    ("alice", "Alice is vegetarian and avoids mushrooms", {"topic": "food"}),
    ("alice", "Alice's daughter Maya starts school in September", {"topic": "family"}),
    ("alice", "Alice prefers aisle seats on short flights", {"topic": "travel"}),
    ("dev-42", "The deploy runbook lives in the ops wiki", {"topic": "work"}),
]


def _seed(site: object) -> None:
    with site.api() as api:  # type: ignore[attr-defined]
        for user, text, meta in DEMO:
            body = {"messages": text, "user_id": user, "infer": False, "metadata": meta, "async_mode": False}
            api.post("/v3/memories/add/", json=body).raise_for_status()
        for query in ("what does alice eat", "seats", "school", "movies"):
            api.post("/v3/memories/search/", json={"query": query, "user_id": "alice"}).raise_for_status()
        project = site.project_a  # type: ignore[attr-defined]
        hook = {"name": "crm-sync", "url": "http://127.0.0.1:9/engram-hook", "event_types": ["memory_add"]}
        api.post(f"/api/v1/webhooks/projects/{project}/", json=hook).raise_for_status()
        body = {"messages": "Alice booked a table for two on Friday", "user_id": "alice", "infer": False}
        api.post("/v3/memories/add/", json={**body, "async_mode": False}).raise_for_status()
    failing_add(site)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    site = start_site(Path(tempfile.mkdtemp(prefix="engram-shots-")))
    try:
        _seed(site)
        alice = next(m for m in site.memories(user_id="alice") if "sci-fi" in str(m["memory"]))
        with site.api() as api:  # an edit, so that the history shows more than the ADD
            change = {
                "text": "alice loves sci-fi movies, especially space operas",
                "metadata": {"genre": "sci-fi"},
            }
            api.put(f"/v1/memories/{alice['id']}/", json=change).raise_for_status()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            shots = [
                ("login", "/login", "light", (1100, 560), False),
                ("overview", "/", "light", (1200, 960), True),
                ("memories", "/memories?q=what+movies+does+alice+like", "light", (1200, 760), True),
                ("memory", f"/memories/{alice['id']}", "dark", (1200, 900), True),
                ("entities", "/entities", "light", (1200, 560), True),
                ("events", "/events", "dark", (1200, 620), True),
                ("settings", "/settings", "light", (1200, 900), True),
                ("phone", "/memories", "dark", (390, 800), True),
            ]
            for name, path, scheme, (width, height), signed_in in shots:
                context = browser.new_context(
                    viewport={"width": width, "height": height},
                    color_scheme=scheme,  # type: ignore[arg-type]
                )
                page = context.new_page()
                if signed_in:
                    page.goto(site.url + "/login")
                    page.get_by_label("API key").fill(site.key_a)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_load_state()
                page.goto(site.url + path)
                if name == "settings":
                    page.locator("details.hook summary").first.click()
                if name == "memories":
                    page.get_by_role("button", name="why?").first.click()
                    page.locator(".breakdown").first.wait_for()
                target = args.out / f"dashboard-{name}.png"
                page.screenshot(path=str(target))
                context.close()
                _shrink(target)
                print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KB")
            browser.close()
    finally:
        site.server.stop()


def _shrink(path: Path) -> None:
    """Quantise to a 256-colour palette when Pillow is around (keeps each PNG well under 150 KB)."""
    try:
        from PIL import Image
    except ImportError:
        subprocess.run(["optipng", "-quiet", str(path)], check=False)
        return
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


if __name__ == "__main__":
    main()
