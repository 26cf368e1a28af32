"""Property tests: every store answers random filters exactly like the documented reference.

One store per test is filled once with ~30 memories carrying random metadata (numbers, strings,
booleans, null, small arrays, one nested object, type confusion between memories); hypothesis then
draws random filter trees (depth <= 3) over those keys, the columns and the dates, and ``get_all``
must return exactly the memories that :mod:`tests.reference_filters` selects.

Strings use a small ASCII alphabet on purpose, so that equalities and substrings collide often; the
non-ASCII case-folding bug of ``icontains`` is covered by tests/test_engine_edge_cases.py instead.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram import AsyncMemory
from engram.errors import ValidationError
from engram.filters import parse_filters
from tests.reference_filters import select

# Known store deviations from docs/filters.md are probed on each store (see _probe_deviations) and
# tolerated here, so that one known bug does not mask everything else; each one is a bug with its own
# test in tests/test_engine_edge_cases.py (test_exists_ignores_json_null, ...), which fails while the
# store deviates.

INTS = [-3, -1, 0, 1, 2, 3, 10]
FLOATS = [-1.5, 0.5, 1.0, 2.0, 2.5, 1e-9]
STRINGS = ["", "a", "ab", "B", "ba", "abc", "Ab", "b a", "10", "true"]
SCALARS: list[Any] = [*INTS, *FLOATS, *STRINGS, True, False, None]
META_KEYS = ["a", "b", "c", "k-1", "tags", "obj", "role"]  # "role" is also a column
FILTER_KEYS = [*(k for k in META_KEYS if k != "role"), "obj.x", "obj.y", "obj.x.z", "missing"]
NAMES = ["alice", "Bob", "carol", "ALICE"]
AGENTS = ["a1", "a2"]
RUNS = ["r1", "r2"]
BASE = datetime(2024, 3, 1, tzinfo=UTC)
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # no .hypothesis directory in the work tree
    print_blob=True,
)


def _value(rng: random.Random, *, nested: bool) -> Any:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(SCALARS)
    if roll < 0.85 or not nested:
        return [rng.choice(SCALARS) for _ in range(rng.randint(0, 3))]
    return {k: _value(rng, nested=False) for k in rng.sample(["x", "y", "w"], rng.randint(0, 3))}


def _metadata(rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key in META_KEYS:
        if rng.random() < 0.65:
            meta[key] = _value(rng, nested=key == "obj" or rng.random() < 0.1)
    return meta


@dataclass
class Filled:
    """A store filled once, the items of scope ``u`` as the API returns them, and date anchors."""

    memory: AsyncMemory
    items: list[dict[str, Any]]
    instants: list[datetime]
    deviations: frozenset[str]

    def __repr__(self) -> str:
        return f"Filled({len(self.items)} memories)"

    @functools.cached_property
    def trees(self) -> st.SearchStrategy[dict[str, Any]]:
        return trees(self.instants)

    @functools.cached_property
    def leaves(self) -> st.SearchStrategy[dict[str, Any]]:
        return leaf(self.instants)


async def _fill(memory: AsyncMemory, seed: int) -> Filled:
    rng = random.Random(seed)
    for i in range(30):
        meta = _metadata(rng)
        message: dict[str, Any] = {"role": rng.choice(["user", "assistant"]), "content": f"note {i} {seed}"}
        name = rng.choice([*NAMES, None])
        if name is not None:
            message["name"] = name
        when = BASE + timedelta(hours=rng.choice([0, 6, 23, 24, 30, 47, 48, 72]), seconds=rng.randint(0, 2))
        await memory.add(
            [message],
            user_id="u",
            agent_id=rng.choice([*AGENTS, None]),
            run_id=rng.choice([*RUNS, None]),
            metadata=meta,
            infer=False,
            timestamp=when.isoformat(),
        )
        # the same metadata in another scope: a filter must never reach it
        await memory.add(f"other {i} {seed}", user_id="v", metadata=meta, infer=False)
    listed = (await memory.get_all(user_id="u", top_k=1000))["results"]
    for item in listed[::4]:  # some memories get an updated_at of their own
        await memory.update(item["id"], metadata={**item["metadata"], "touched": True})
    items = (await memory.get_all(user_id="u", top_k=1000))["results"]
    assert len(items) == 30
    instants = [datetime.fromisoformat(i[k]) for i in items for k in ("observed_at", "created_at")]
    instants += [datetime.fromisoformat(i["updated_at"]) for i in items if i["updated_at"]]
    return Filled(memory, items, instants, await _probe_deviations(memory))


PROBES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # deviation: (metadata of a probe memory, a filter that matches it only on a deviating store)
    "exists_matches_null": ({"pn": None}, {"pn": "*"}),
    "contains_object_values": ({"po": {"x": "v"}}, {"po": {"contains": "v"}}),
    "icontains_array_substring": ({"pa": ["Abc"]}, {"pa": {"icontains": "b"}}),
}


async def _probe_deviations(memory: AsyncMemory) -> frozenset[str]:
    """Which of the known deviations this store still has (probed in a scope of its own)."""
    found = set()
    for name, (meta, filters) in PROBES.items():
        await memory.add(f"probe {name}", user_id="probe", metadata=meta, infer=False)
        if (await memory.get_all(user_id="probe", filters=filters))["results"]:
            found.add(name)
    return frozenset(found)


@pytest.fixture(params=[0, 1], ids=["seed0", "seed1"])
async def filled(amem: AsyncMemory, request: pytest.FixtureRequest) -> Filled:
    return await _fill(amem, int(request.param))


# -- strategies ------------------------------------------------------------------------------------
scalars = st.sampled_from(SCALARS)
numbers = st.sampled_from([*INTS, *FLOATS])
strings = st.sampled_from(STRINGS)


def metadata_condition() -> st.SearchStrategy[Any]:
    ordered = st.one_of(numbers, strings)
    return st.one_of(
        scalars,  # bare value: equality
        st.just("*"),
        st.builds(lambda v: {"eq": v}, scalars),
        st.builds(lambda v: {"ne": v}, scalars),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["gt", "gte", "lt", "lte"]), ordered),
        st.builds(
            lambda op, v: {op: v}, st.sampled_from(["in", "nin"]), st.lists(scalars, min_size=1, max_size=3)
        ),
        st.builds(lambda v: {"contains": v}, st.one_of(strings, numbers)),
        st.builds(lambda v: {"icontains": v}, st.sampled_from(["a", "A", "b", "AB", "b A", "1", ""])),
        st.builds(lambda lo, hi: {"gte": lo, "lt": hi}, numbers, numbers),  # two ops on one key
    )


def column_condition(values: list[str]) -> st.SearchStrategy[Any]:
    text = st.sampled_from(values)
    return st.one_of(
        text,
        st.just("*"),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), text),
        st.builds(
            lambda op, v: {op: v}, st.sampled_from(["in", "nin"]), st.lists(text, min_size=1, max_size=3)
        ),
        st.builds(
            lambda op, v: {op: v},
            st.sampled_from(["contains", "icontains"]),
            st.sampled_from(["a", "A", "li", "1"]),
        ),
    )


def date_condition(instants: list[datetime]) -> st.SearchStrategy[Any]:
    def render(moment: datetime, form: str) -> Any:
        if form == "day":
            return moment.date().isoformat()
        if form == "unix":
            return moment.timestamp()
        if form == "z":
            return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()  # same instant

    moment = st.builds(
        lambda base, shift: base + timedelta(seconds=shift),
        st.sampled_from(instants),
        st.sampled_from([-3600, -1, 0, 1, 3600, 86400]),
    )
    value = st.builds(render, moment, st.sampled_from(["day", "unix", "z", "local"]))
    ops = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"])
    return st.one_of(value, st.just("*"), st.builds(lambda op, v: {op: v}, ops, value))


def leaf(instants: list[datetime]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda k, c: {k: c}, st.sampled_from(FILTER_KEYS), metadata_condition()),
        st.builds(lambda c: {"actor_id": c}, column_condition([*NAMES, "zed"])),
        st.builds(lambda c: {"role": c}, column_condition(["user", "assistant"])),
        st.builds(lambda c: {"agent_id": c}, column_condition(AGENTS)),
        st.builds(lambda c: {"run_id": c}, column_condition(RUNS)),
        st.builds(
            lambda k, c: {k: c},
            st.sampled_from(["observed_at", "created_at", "updated_at"]),
            date_condition(instants),
        ),
        st.builds(
            lambda k, c: {"metadata": {k: c}}, st.sampled_from(["a", "role", "user_id"]), metadata_condition()
        ),
    )


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sibling keys (ANDed) in one object; a key that comes twice goes into an explicit AND."""
    merged: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    for part in parts:
        for key, value in part.items():
            if key in merged:
                extra.append({key: value})
            else:
                merged[key] = value
    if extra:
        merged["AND"] = [*merged.get("AND", []), *extra]
    return merged


def trees(instants: list[datetime]) -> st.SearchStrategy[dict[str, Any]]:
    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        group = st.lists(children, min_size=1, max_size=3)
        return st.one_of(
            st.builds(lambda cs: {"AND": cs}, group),
            st.builds(lambda cs: {"OR": cs}, group),
            st.builds(lambda cs: {"NOT": cs}, group),
            st.builds(lambda cs: {"$or": cs}, group),
            st.builds(_merge, group),
        )

    return st.recursive(leaf(instants), extend, max_leaves=8)


# -- properties ------------------------------------------------------------------------------------
async def _check(filled: Filled, raw: dict[str, Any], *, wrap: bool) -> None:
    filters = {"OR": [raw]} if wrap else raw
    expected = select(parse_filters(raw), filled.items, filled.deviations)
    try:
        found = await filled.memory.get_all(user_id="u", filters=filters, top_k=1000)
    except ValidationError as e:
        # two different scope ids for one field at the top level: a contradiction, nothing can match
        assert not wrap and "given twice" in str(e), e
        assert expected == set(), raw
        return
    got = [r["id"] for r in found["results"]]
    assert len(got) == len(set(got)) == found["total"], raw
    assert set(got) == expected, (raw, sorted(set(got) ^ expected))


@SETTINGS
@given(data=st.data())
async def test_get_all_matches_the_reference(filled: Filled, data: st.DataObject) -> None:
    raw = data.draw(filled.trees, label="filters")
    await _check(filled, raw, wrap=data.draw(st.booleans(), label="wrap"))


@settings(SETTINGS, max_examples=120)
@given(data=st.data())
async def test_single_conditions_match_the_reference(filled: Filled, data: st.DataObject) -> None:
    """Every leaf on its own (shrinks to the smallest disagreement fast)."""
    await _check(filled, data.draw(filled.leaves, label="filters"), wrap=True)


@settings(SETTINGS, max_examples=40)
@given(data=st.data())
async def test_search_stays_inside_the_reference_set(filled: Filled, data: st.DataObject) -> None:
    raw = data.draw(filled.trees, label="filters")
    expected = select(parse_filters(raw), filled.items, filled.deviations)
    found = await filled.memory.search("note 3 ab", user_id="u", filters={"OR": [raw]}, top_k=100)
    got = {r["id"] for r in found["results"]}
    assert got <= expected, (raw, sorted(got - expected))
    assert bool(got) == bool(expected), raw  # the vector side brings every filtered memory


def test_reference_follows_the_documented_examples() -> None:
    """The reference itself, on the examples of docs/filters.md and the typed-comparison rules."""
    item = {
        "id": "1",
        "actor_id": None,
        "role": "user",
        "created_at": "2024-05-01T10:00:00+00:00",
        "updated_at": None,
        "observed_at": "2024-05-01T23:59:59+00:00",
        "metadata": {"rating": "5", "n": 4, "flag": True, "none": None, "tags": ["Xy", 2], "o": {"p": 1}},
    }

    def hit(raw: dict[str, Any], deviations: frozenset[str] = frozenset()) -> bool:
        return select(parse_filters(raw), [item], deviations) == {"1"}

    assert not hit({"rating": {"gt": 4}})  # the string "5" is not a number
    assert hit({"rating": {"gte": "5"}}) and hit({"n": {"gt": 3.5}}) and not hit({"flag": 1})
    assert (
        hit({"missing": {"ne": 1}}) and hit({"missing": {"nin": [1]}}) and not hit({"missing": {"in": [1]}})
    )
    assert hit({"tags": {"contains": "Xy"}}) and not hit({"tags": {"contains": "X"}})
    assert hit({"tags": {"contains": 2}}) and not hit({"rating": {"contains": 5}})
    assert hit({"tags": {"icontains": "xY"}}) and not hit({"tags": {"icontains": "x"}})
    assert hit({"tags": {"icontains": "x"}}, frozenset({"icontains_array_substring"}))
    assert not hit({"none": "*"}) and hit({"none": "*"}, frozenset({"exists_matches_null"}))
    assert hit({"none": None}) and not hit({"none": {"ne": None}}) and hit({"missing": {"ne": None}})
    assert hit({"o.p": 1}) and not hit({"o": {"contains": "p"}}) and not hit({"o.p.q": "*"})
    assert hit({"observed_at": {"lte": "2024-05-01"}}) and hit({"observed_at": "2024-05-01"})
    assert not hit({"observed_at": {"gt": "2024-05-01"}}) and hit({"updated_at": "2024-05-01"})
    assert (
        hit({"actor_id": {"ne": "x"}}) and not hit({"actor_id": "*"}) and hit({"role": {"icontains": "US"}})
    )
    assert hit({"NOT": [{"role": "assistant"}], "OR": [{"n": 5}, {"flag": True}]})
    with pytest.raises(ValueError, match="unknown deviations"):
        select(None, [item], {"nope"})


# -- the parser's whole-day rule, against its definition --------------------------------------------
@settings(max_examples=300, deadline=None, database=None)
@given(
    instant=st.datetimes(
        min_value=datetime(2023, 12, 30), max_value=datetime(2024, 1, 3), timezones=st.just(UTC)
    ),
    day=st.dates(min_value=datetime(2023, 12, 31).date(), max_value=datetime(2024, 1, 2).date()),
    op=st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
    field=st.sampled_from(["observed_at", "created_at", "updated_at"]),
)
def test_a_bare_date_means_the_whole_utc_day(instant: datetime, day: Any, op: str, field: str) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    inside = start <= instant < end
    expected = {
        "eq": inside,
        "ne": not inside,
        "gt": instant >= end,
        "gte": instant >= start,
        "lt": instant < start,
        "lte": instant < end,
    }[op]
    item = {
        "id": "1",
        "created_at": instant.isoformat(),
        "updated_at": None,
        "observed_at": instant.isoformat(),
    }
    assert bool(select(parse_filters({field: {op: day.isoformat()}}), [item])) == expected
    exact = instant.astimezone(timezone(timedelta(hours=-7))).isoformat()  # the same instant elsewhere
    assert bool(select(parse_filters({field: exact}), [item]))
    assert not select(parse_filters({field: {"ne": exact}}), [item])
