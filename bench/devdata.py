"""Engram's own development sets: ``python -m bench.devdata`` (re)writes ``bench/data/*.json``.

- ``everyday``: many small scopes (3-60 memories) of extracted facts or of raw chat turns, with keyword,
  paraphrase (little word overlap), temporal (month/year) and distractor (a near-miss fact of the same
  family is in the scope) questions; each question has exactly one gold memory.
- ``longchat``: conversations whose assistant answers are long markdown documents (5-50k characters,
  code blocks, tables) with details planted in their middle; keyword and paraphrase questions.

Every scope is in the ``tune`` or the ``report`` part (alternating); weights are chosen on ``tune``.
The generator is seeded, so the committed files are reproducible.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench import devdata_long as L
from bench.devdata_vocab import ACKS, EVENT_ACKS, EVENTS, FILLER_CHAT, FILLER_FACTS, FRAMES, TEMPORAL_Q

DATA = Path(__file__).resolve().parent / "data"
SETS = ("everyday", "longchat")
_START = datetime(2023, 1, 1, 9, 0)


def _months(rng: random.Random, n: int) -> list[datetime]:
    """``n`` distinct months of 2023-2024, each with a random day and hour."""
    picks = rng.sample(range(24), n)
    return [
        datetime(2023 + m // 12, m % 12 + 1, rng.randint(1, 27), rng.randint(8, 20), rng.randint(0, 59))
        for m in picks
    ]


def _size(rng: random.Random) -> int:
    r = rng.random()
    return rng.randint(3, 6) if r < 0.3 else rng.randint(7, 20) if r < 0.7 else rng.randint(21, 60)


def _question(
    rng: random.Random, frame: dict[str, Any], kind: str, gold: str, present: set[str]
) -> dict[str, Any]:
    siblings = {f["key"] for f in FRAMES if f["family"] == frame["family"]} - {frame["key"]}
    return {
        "q": rng.choice(frame[kind]),
        "gold": [gold],
        "type": kind,
        "distractor": bool(siblings & present),
    }


def _temporal(rng: random.Random, when: datetime, gold: str) -> dict[str, Any]:
    q = rng.choice(TEMPORAL_Q).format(m=when.strftime("%B"), y=when.year)
    return {"q": q, "gold": [gold], "type": "temporal", "distractor": False}


def _plan(rng: random.Random, size: int, per_frame: int) -> tuple[list[dict[str, Any]], int]:
    """Frames and the number of events for a scope of about ``size`` memories."""
    n_frames = max(1, min(len(FRAMES), size // per_frame if per_frame > 1 else size // 2))
    n_events = 0 if size < 6 else rng.randint(0, min(3, size // 6))
    return rng.sample(FRAMES, n_frames), n_events


def facts_scope(rng: random.Random, sid: str) -> dict[str, Any]:
    size = _size(rng)
    frames, n_events = _plan(rng, size, 1)
    dates = _months(rng, n_events + 8)
    event_dates, other = dates[:n_events], dates[n_events:]
    mems: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    keys = {f["key"] for f in frames}

    def mem(text: str, when: datetime) -> str:
        tag = f"{sid}:m{len(mems)}"
        mems.append({"tag": tag, "role": "user", "text": text, "ts": when.isoformat()})
        return tag

    asked = []
    for frame in frames:
        tag = mem(rng.choice(frame["facts"]).format(v=rng.choice(frame["values"])), rng.choice(other))
        asked.append((frame, tag))
    for (fact, _), when in zip(rng.sample(EVENTS, n_events), event_dates, strict=True):
        questions.append(_temporal(rng, when, mem(fact, when)))
    for text in rng.sample(FILLER_FACTS, max(0, min(len(FILLER_FACTS), size - len(mems)))):
        mem(text, rng.choice(other))
    for frame, tag in rng.sample(asked, min(len(asked), rng.randint(2, 4))):
        questions.append(_question(rng, frame, rng.choice(["keyword", "paraphrase"]), tag, keys))
    rng.shuffle(mems)  # extracted facts come in no particular order; timestamps stay with their fact
    mems.sort(key=lambda m: m["ts"])
    return {"id": sid, "kind": "facts", "memories": mems, "questions": questions}


def turns_scope(rng: random.Random, sid: str) -> dict[str, Any]:
    size = _size(rng)
    frames, n_events = _plan(rng, size, 5)
    sessions: list[tuple[str, Any]] = [("frame", f) for f in frames] + [
        ("event", e) for e in rng.sample(EVENTS, n_events)
    ]
    n_fill = max(0, (size - 4 * len(frames) - 2 * n_events) // 2)
    sessions += [("filler", c) for c in rng.sample(FILLER_CHAT, min(len(FILLER_CHAT), n_fill))]
    rng.shuffle(sessions)
    dates = sorted(_months(rng, len(sessions)))
    mems: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    keys = {f["key"] for f in frames}
    for (kind, item), when in zip(sessions, dates, strict=True):

        def say(role: str, text: str, when: datetime = when) -> str:
            tag = f"{sid}:t{len(mems)}"
            stamp = when + timedelta(minutes=len(mems))
            mems.append({"tag": tag, "role": role, "text": text, "ts": stamp.isoformat()})
            return tag

        if kind == "frame":
            value = rng.choice(item["values"])
            say("user", rng.choice(item["opener"]))
            say("assistant", rng.choice(item["reply"]))
            gold = say("user", rng.choice(item["answer"]).format(v=value))
            say("assistant", rng.choice(ACKS))
            if rng.random() < 0.8:
                questions.append(_question(rng, item, rng.choice(["keyword", "paraphrase"]), gold, keys))
        elif kind == "event":
            gold = say("user", item[1])
            say("assistant", rng.choice(EVENT_ACKS))
            questions.append(_temporal(rng, when, gold))
        else:
            say("user", item[0])
            say("assistant", item[1])
    return {"id": sid, "kind": "turns", "memories": mems, "questions": questions}


def longchat_scope(rng: random.Random, sid: str) -> dict[str, Any]:
    domain = rng.choice(sorted(L.DOMAINS))
    details = rng.sample(L.DETAILS, 9)
    when = _START + timedelta(days=rng.randint(0, 600), hours=rng.randint(0, 10))
    mems: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    for i in range(rng.randint(3, 4)):
        ask = rng.choice(L.DOMAINS[domain]["ask"])
        mems.append(
            {
                "tag": f"{sid}:t{len(mems)}",
                "role": "user",
                "text": ask,
                "ts": (when + timedelta(minutes=2 * len(mems))).isoformat(),
            }
        )
        long = i < 3
        chars = (
            (rng.randint(5_000, 12_000) if rng.random() < 0.8 else rng.randint(12_000, 50_000))
            if long
            else rng.randint(600, 2_000)
        )
        planted = [details.pop() for _ in range(rng.randint(1, 3) if long else 0)]
        sentences = [d["t"].format(x=rng.choice(d["x"])) for d in planted]
        text = L.long_answer(rng, domain, chars, sentences)
        tag = f"{sid}:t{len(mems)}"
        mems.append(
            {
                "tag": tag,
                "role": "assistant",
                "text": text,
                "ts": (when + timedelta(minutes=2 * len(mems))).isoformat(),
            }
        )
        for d in planted:
            kind = "keyword" if rng.random() < 0.5 else "paraphrase"
            questions.append(
                {
                    "q": d[kind],
                    "gold": [tag],
                    "type": kind,
                    "distractor": False,
                    "length": "5-12k" if len(text) < 12_000 else "12-50k",
                }
            )
    return {"id": sid, "kind": "longchat", "memories": mems, "questions": questions}


def generate(name: str, seed: int = 10) -> dict[str, Any]:
    rng = random.Random(f"{name}-{seed}")
    scopes: list[dict[str, Any]] = []
    if name == "everyday":
        for i in range(96):
            make = facts_scope if i % 2 == 0 else turns_scope
            scopes.append(make(rng, f"ev{i:03d}"))
    else:
        scopes = [longchat_scope(rng, f"lc{i:02d}") for i in range(18)]
    for i, scope in enumerate(scopes):
        scope["split"] = "tune" if (i // 2) % 2 == 0 else "report"
    return {"name": name, "seed": seed, "scopes": [s for s in scopes if s["questions"]]}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text("utf-8"))
    return data


def main(argv: list[str]) -> int:
    DATA.mkdir(parents=True, exist_ok=True)
    for name in SETS:
        data = generate(name)
        path = DATA / f"{name}.json"
        path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", "utf-8")
        n_q = sum(len(s["questions"]) for s in data["scopes"])
        n_m = sum(len(s["memories"]) for s in data["scopes"])
        size = path.stat().st_size
        print(f"{path}: {len(data['scopes'])} scopes, {n_m} memories, {n_q} questions, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
