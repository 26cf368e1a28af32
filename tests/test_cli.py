"""The `engram` command, run for real in a subprocess on the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ENGRAM = [sys.executable, "-m", "engram.cli"]


def engram(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENGRAM_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*ENGRAM, *args], env=env, capture_output=True, text=True, timeout=300)


def test_quickstart_stores_preferences_and_finds_them_first(tmp_path: Path) -> None:
    first = engram("quickstart", home=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "alice loves sci-fi movies" in first.stdout
    assert "alice is not a big fan of thriller movies" in first.stdout
    assert "extractor: offline" in first.stdout
    profile = first.stdout[first.stdout.index("Profile of alice") :]
    assert "preferences" in profile and "sci-fi" in profile and "thriller" in profile
    found = engram(
        "search", "What kind of movies does alice like?", "--user", "alice", "--json", home=tmp_path
    )
    top_two = {r["memory"] for r in json.loads(found.stdout)["results"][:2]}
    assert top_two == {"alice loves sci-fi movies", "alice is not a big fan of thriller movies"}
    before = json.loads(engram("list", "--user", "alice", "--json", home=tmp_path).stdout)["total"]
    for _ in range(2):
        again = engram("quickstart", home=tmp_path)
        assert again.returncode == 0 and "NONE" in again.stdout
    after = json.loads(engram("list", "--user", "alice", "--json", home=tmp_path).stdout)["total"]
    assert after == before


def test_add_search_list(tmp_path: Path) -> None:
    added = engram(
        "add",
        "I prefer window seats",
        "--user",
        "bob",
        "--raw",
        "--metadata",
        '{"topic": "travel"}',
        "--json",
        home=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["results"][0]["event"] == "ADD"
    found = engram(
        "search", "window seat", "--user", "bob", "--filters", '{"topic": "travel"}', "--json", home=tmp_path
    )
    assert json.loads(found.stdout)["results"][0]["memory"] == "I prefer window seats"
    listed = engram("list", "--user", "bob", home=tmp_path)
    assert "I prefer window seats" in listed.stdout


def test_bad_input_is_a_clean_error(tmp_path: Path) -> None:
    bad = engram("search", "x", "--user", "bob", "--filters", '{"a": {"between": 1}}', home=tmp_path)
    assert bad.returncode == 2
    assert "filters.a.between" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
    bad_json = engram("add", "x", "--user", "bob", "--metadata", "{nope", home=tmp_path)
    assert bad_json.returncode != 0 and "Traceback" not in bad_json.stderr
