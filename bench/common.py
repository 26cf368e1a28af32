"""Shared pieces of the benchmarks: LoCoMo loading, metrics, runner processes, statistics, output."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "locomo10.json"
LOCOMO_SHA256 = "79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4"
_SESSION_RE = re.compile(r"session_(\d+)")
_DIA_RE = re.compile(r"D(\d+):(\d+)")


class BenchError(RuntimeError):
    """A benchmark could not run or produced an invalid result (the run must fail)."""


# -- LoCoMo -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Turn:
    dia_id: str
    session: int
    speaker: str
    text: str
    date: str | None  # the session's "1:56 pm on 8 May, 2023"

    @property
    def content(self) -> str:
        """What both systems store: ``"speaker: text"``."""
        return f"{self.speaker}: {self.text}"


@dataclass(slots=True)
class Question:
    question: str
    category: int
    evidence: list[str]  # usable evidence dia_ids only


@dataclass(slots=True)
class Conversation:
    sample_id: str
    turns: list[Turn]
    questions: list[Question]
    skipped: dict[str, int] = field(default_factory=dict)


def data_path() -> Path:
    """``$ENGRAM_LOCOMO`` or ``../shared/data/locomo10.json`` beside the repository."""
    return Path(os.environ.get("ENGRAM_LOCOMO") or DEFAULT_DATA)


def load_locomo(path: Path | None = None, categories: Iterable[int] = (1, 2, 3, 4)) -> list[Conversation]:
    """Parse LoCoMo; evidence ids that are malformed or point to missing turns are counted, not fatal."""
    source = path or data_path()
    if not source.exists():
        raise BenchError(f"LoCoMo data not found at {source}: set ENGRAM_LOCOMO to locomo10.json")
    wanted = set(categories)
    out: list[Conversation] = []
    for sample in json.loads(source.read_text("utf-8")):
        conv = sample["conversation"]
        sessions = sorted(
            (int(m.group(1)), key)
            for key in conv
            if (m := _SESSION_RE.fullmatch(key)) and isinstance(conv[key], list)
        )
        turns = [
            Turn(t["dia_id"], n, t["speaker"], t["text"], conv.get(f"{key}_date_time"))
            for n, key in sessions
            for t in conv[key]
        ]
        known = {t.dia_id for t in turns}
        skipped = {
            "questions_empty_evidence": 0,
            "questions_no_usable_evidence": 0,
            "evidence_malformed": 0,
            "evidence_missing_turn": 0,
            "questions_other_category": 0,
        }
        questions: list[Question] = []
        for qa in sample["qa"]:
            if qa.get("category") not in wanted:
                skipped["questions_other_category"] += 1
                continue
            raw = qa.get("evidence") or []
            if not raw:
                skipped["questions_empty_evidence"] += 1
                continue
            usable: list[str] = []
            for ev in raw:
                ev = str(ev).strip()
                if not _DIA_RE.fullmatch(ev):
                    skipped["evidence_malformed"] += 1
                elif ev not in known:
                    skipped["evidence_missing_turn"] += 1
                elif ev not in usable:
                    usable.append(ev)
            if not usable:
                skipped["questions_no_usable_evidence"] += 1
                continue
            questions.append(Question(str(qa["question"]), int(qa["category"]), usable))
        out.append(Conversation(sample["sample_id"], turns, questions, skipped))
    return out


def session_of(dia_id: str) -> str:
    return dia_id.split(":", 1)[0]


# -- metrics ------------------------------------------------------------------------------------
def recall_at(found: Sequence[Sequence[str]], evidence: Sequence[str], k: int) -> float:
    """Fraction of ``evidence`` ids among the ids of the top ``k`` results (each result has a list)."""
    if not evidence:
        raise BenchError("recall of a question without evidence")
    top = {i for ids in found[:k] for i in ids}
    return sum(1 for e in set(evidence) if e in top) / len(set(evidence))


def ndcg_at(found: Sequence[Sequence[str]], evidence: Sequence[str], k: int = 10) -> float:
    """Binary-relevance NDCG@k where a result is relevant when it covers a not-yet-seen evidence id."""
    wanted = set(evidence)
    seen: set[str] = set()
    dcg = 0.0
    for rank, ids in enumerate(found[:k]):
        new = (wanted & set(ids)) - seen
        if new:
            dcg += 1.0 / math.log2(rank + 2)
            seen |= new
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(wanted), k)))
    return dcg / ideal if ideal else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    if not values:
        raise BenchError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_summary(ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": float(len(ms)),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(sum(ms) / len(ms), 3),
    }


# -- runner processes ---------------------------------------------------------------------------
class Runner:
    """A system under test in its own process, driven by JSON lines over stdin/stdout."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            bufsize=1,
            env={**os.environ, **(env or {})},
        )

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; a failure in the runner raises BenchError."""
        if self.proc.stdin is None or self.proc.stdout is None:
            raise BenchError(f"{self.name}: runner has no pipes")
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError as e:
            raise BenchError(f"{self.name}: runner exited (code {self.proc.poll()})") from e
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"{self.name}: runner exited during {op!r} (code {self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise BenchError(f"{self.name}: {op} failed: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BenchError):
                self.call("exit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def engram_runner(name: str = "engram", env: dict[str, str] | None = None) -> Runner:
    """Engram runs in this interpreter's environment, in its own process (fresh RSS, fair timing)."""
    script = REPO / "bench" / "_engram_runner.py"
    return Runner(name, [sys.executable, str(script)], env)


def mem0_runner(name: str = "mem0", env: dict[str, str] | None = None) -> Runner:
    from bench.mem0_env import ensure_env, runner_env

    python = ensure_env()
    script = REPO / "bench" / "_mem0_runner.py"
    return Runner(name, [str(python), str(script)], {**runner_env(), **(env or {})})


# -- output -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gb"] = round(int(mem) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def write_results(name: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None) -> Path:
    directory = out_dir or RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **payload,
    }
    (directory / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    (directory / f"{name}.md").write_text(markdown, "utf-8")
    return directory / f"{name}.json"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def progress(iterable: Iterable[Any], total: int | None = None, desc: str = "") -> Iterable[Any]:
    """A tqdm progress bar on stderr (plain iteration when tqdm is missing)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    bar: Iterable[Any] = tqdm(
        iterable, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True
    )
    return bar
