"""The benchmark harness: its metrics, its failure checks, and its quick modes run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import locomo, speed  # noqa: E402
from bench.common import (  # noqa: E402
    BenchError,
    data_path,
    latency_summary,
    load_locomo,
    ndcg_at,
    percentile,
    recall_at,
)
from bench.mem0_env import python_path  # noqa: E402

HAVE_DATA = data_path().exists()
WITH_MEM0 = os.environ.get("ENGRAM_BENCH_MEM0") == "1" or python_path().exists()


# -- metrics ----------------------------------------------------------------------------------------
def test_recall_counts_each_evidence_once_and_respects_k() -> None:
    found = [["D1:1"], ["D1:2", "D1:3"], ["D2:1"]]
    assert recall_at(found, ["D1:3", "D2:1"], 1) == 0.0
    assert recall_at(found, ["D1:3", "D2:1"], 2) == 0.5
    assert recall_at(found, ["D1:3", "D2:1", "D2:1"], 3) == 1.0
    assert recall_at([], ["D1:1"], 10) == 0.0
    with pytest.raises(BenchError):
        recall_at(found, [], 5)


def test_ndcg_is_one_for_a_perfect_ranking_and_lower_otherwise() -> None:
    assert ndcg_at([["a"], ["b"], ["x"]], ["a", "b"], 10) == pytest.approx(1.0)
    worse = ndcg_at([["x"], ["a"], ["b"]], ["a", "b"], 10)
    assert 0.0 < worse < 1.0
    assert ndcg_at([["x"], ["y"]], ["a"], 10) == 0.0
    # a result repeating an already-found evidence id earns nothing more
    assert ndcg_at([["a"], ["a"]], ["a", "b"], 10) == pytest.approx(1.0 / (1.0 + 1.0 / 1.584962500721156))


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    summary = latency_summary(values)
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    with pytest.raises(BenchError):
        percentile([], 50)


# -- the checks that make a run red -------------------------------------------------------------------
def _result(**metrics: Any) -> dict[str, Any]:
    base = {f"turn_r@{k}": 0.3 + 0.1 * i for i, k in enumerate(locomo.KS)}
    base |= {f"session_r@{k}": 0.6 + 0.1 * i for i, k in enumerate(locomo.KS)}
    base |= {"ndcg@10": 0.4, "n": 10} | metrics
    return {"questions": 10, "systems": {"engram": {"metrics": {"all": base}, "empty_results": 0}}}


def test_check_accepts_a_sane_result() -> None:
    assert locomo.check(_result()) == []


@pytest.mark.parametrize(
    "broken",
    [
        {"ndcg@10": 1.5},  # out of range
        {"turn_r@20": 0.1},  # not monotonic and below the floor
        {"n": 7},  # questions went missing
        {"session_r@10": 0.1},  # session recall below turn recall
    ],
)
def test_check_flags_a_broken_metric(broken: dict[str, Any]) -> None:
    assert locomo.check(_result(**broken))


def test_check_flags_a_crashed_system_and_empty_results() -> None:
    crashed = _result()
    crashed["systems"]["mem0"] = {"label": "mem0", "error": "runner exited"}
    assert any("crashed" in p for p in locomo.check(crashed))
    empty = _result()
    empty["systems"]["engram"]["empty_results"] = 5
    assert any("empty" in p for p in locomo.check(empty))


def test_speed_check_flags_bad_percentiles() -> None:
    good = {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0}
    result = {
        "search": {"1000": {"engram": {"embedding_included": good, "store_only": dict(good, p50_ms=0.0)}}},
        "add_one_at_a_time": {"engram": {"memories_per_s": 10.0}},
        "add_batched_50": {"engram": {"memories_per_s": 0.0}},
    }
    problems = speed.check(result)
    assert len(problems) == 2


# -- data -----------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_DATA, reason="LoCoMo data not present (set ENGRAM_LOCOMO)")
def test_locomo_loading_counts_what_it_skips() -> None:
    convs = load_locomo()
    assert len(convs) == 10
    assert sum(len(c.turns) for c in convs) == 5882
    questions = sum(len(c.questions) for c in convs)
    skipped: dict[str, int] = {}
    for c in convs:
        for k, v in c.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    assert skipped["questions_other_category"] == 446
    assert skipped["questions_empty_evidence"] == 4
    assert skipped["evidence_malformed"] > 0 and skipped["evidence_missing_turn"] > 0
    assert questions + skipped["questions_empty_evidence"] + skipped["questions_no_usable_evidence"] == 1540
    known = {(c.sample_id, t.dia_id) for c in convs for t in c.turns}
    assert all((c.sample_id, e) in known for c in convs for q in c.questions for e in q.evidence)


def test_session_timestamps_parse() -> None:
    assert locomo.session_timestamp("1:56 pm on 8 May, 2023") == "2023-05-08T13:56:00"
    assert locomo.session_timestamp("not a date") is None
    assert locomo.session_timestamp(None) is None


# -- quick modes, run for real -------------------------------------------------------------------------
def _run(module: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, "--quick", "--out", str(tmp), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason="LoCoMo data not present (set ENGRAM_LOCOMO)")
def test_locomo_quick_runs_and_scores(tmp_path: Path) -> None:
    systems = "engram,engram-keyword,engram-vector,engram-infer" + (",mem0" if WITH_MEM0 else "")
    proc = _run("bench.locomo", "--systems", systems, "--no-plot", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "locomo-quick.json").read_text())
    assert result["problems"] == []
    rows = result["systems"]
    hybrid = rows["engram"]["metrics"]["all"]
    assert hybrid["n"] == result["questions"] > 20
    # hybrid must not lose to either of its own signals at k=10 (a fusion regression shows here)
    assert hybrid["turn_r@10"] >= rows["engram-vector"]["metrics"]["all"]["turn_r@10"]
    assert hybrid["turn_r@10"] >= rows["engram-keyword"]["metrics"]["all"]["turn_r@10"] - 0.05
    if WITH_MEM0:
        assert hybrid["turn_r@10"] > rows["mem0"]["metrics"]["all"]["turn_r@10"]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason="LoCoMo data not present (set ENGRAM_LOCOMO)")
def test_locomo_quick_fails_on_a_crashed_system(tmp_path: Path) -> None:
    env = {**os.environ, "ENGRAM_BENCH_INJECT_FAILURE": "search_many"}
    crashed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.locomo",
            "--quick",
            "--systems",
            "engram",
            "--no-plot",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert crashed.returncode != 0
    assert "crashed" in crashed.stderr
    result = json.loads((tmp_path / "locomo-quick.json").read_text())
    assert "error" in result["systems"]["engram"]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason="LoCoMo data not present (set ENGRAM_LOCOMO)")
def test_speed_quick_runs(tmp_path: Path) -> None:
    systems = "engram,mem0" if WITH_MEM0 else "engram"
    proc = _run("bench.speed", "--systems", systems, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "speed-quick.json").read_text())
    assert result["problems"] == []
    for size in ("1000", "10000"):
        row = result["search"][size]["engram"]
        assert row["embedding_excluded"]["p50_ms"] > 0 and row["store_only"]["p95_ms"] > 0
    assert result["add_one_at_a_time"]["engram"]["memories_per_s"] > 0
    assert (tmp_path / "speed-quick.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not HAVE_DATA, reason="LoCoMo data not present (set ENGRAM_LOCOMO)")
def test_speed_runs_engram_on_postgres_beside_sqlite(tmp_path: Path, pg_url: str) -> None:
    """The PostgreSQL rows of docs/benchmarks.md come from this code path (small sizes here)."""
    proc = _run(
        "bench.speed",
        "--systems",
        "engram,engram-pg",
        "--sizes",
        "1000",
        "--scale",
        "--scale-n",
        "3000",
        "--name",
        "speed-pg",
        "--pg-url",
        pg_url,
        tmp=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "speed-pg.json").read_text())
    assert result["problems"] == []
    row = result["search"]["1000"]
    assert row["engram-pg"]["store_only"]["p50_ms"] > 0 and row["engram"]["store_only"]["p50_ms"] > 0
    assert result["add_one_at_a_time"]["engram-pg"]["memories_per_s"] > 0
    scale = result["scale_1m"]["engram-pg"]
    assert scale["memories"] == 3000 and scale["vector_and_text_index_build_s"] >= 0
    assert scale["load_memories_per_s"] > 0
    assert scale["store_only"]["p95_ms"] > 0 and scale["disk_bytes"] > 0
    assert "search_p50_store_only_1000_postgres_over_sqlite" in result["ratios"]
