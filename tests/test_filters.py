"""The filter language: every operator, nesting, and malformed filters, on every store."""

from __future__ import annotations

from typing import Any

import pytest

from engram import AsyncMemory
from engram.errors import FilterError, ScopeRequiredError, ValidationError
from engram.filters import And, Cond, Not, Or, parse_filters, split_scope
from engram.types import Scope

ROWS: list[tuple[str, dict[str, Any], str | None, str, str]] = [
    # text, metadata, actor (name), role, observed date
    (
        "alpha",
        {"category": "food", "rating": 5, "tags": ["x", "y"], "note": "Hello World", "active": True},
        "alice",
        "user",
        "2024-01-10T12:00:00+00:00",
    ),
    (
        "beta",
        {"category": "travel", "rating": 3, "tags": ["y"], "note": "goodbye", "active": False},
        "bob",
        "assistant",
        "2024-02-10T12:00:00+00:00",
    ),
    (
        "gamma",
        {"category": "food", "rating": 4.5, "price": "10", "nested": {"level": 2}},
        None,
        "user",
        "2024-03-10T12:00:00+00:00",
    ),
    ("delta", {"rating": "5"}, "alice", "user", "2024-04-10T12:00:00+00:00"),
]


@pytest.fixture
async def filled(amem: AsyncMemory) -> AsyncMemory:
    for text, meta, name, role, when in ROWS:
        msg: dict[str, Any] = {"role": role, "content": text}
        if name:
            msg["name"] = name
        await amem.add([msg], user_id="u", metadata=meta, infer=False, timestamp=when)
    await amem.add("epsilon other user", user_id="v", infer=False, metadata={"category": "food"})
    return amem


async def texts(m: AsyncMemory, filters: dict[str, Any]) -> set[str]:
    found = await m.get_all(filters={"user_id": "u", **filters})
    return {r["memory"] for r in found["results"]}


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"category": "food"}, {"alpha", "gamma"}),
    ({"category": {"eq": "travel"}}, {"beta"}),
    ({"category": {"ne": "food"}}, {"beta", "delta"}),  # missing key counts as "not equal"
    ({"rating": {"gt": 4}}, {"alpha", "gamma"}),  # "5" (a string) is not a number
    ({"rating": {"gte": 4.5}}, {"alpha", "gamma"}),
    ({"rating": {"lt": 4}}, {"beta"}),
    ({"rating": {"lte": 3}}, {"beta"}),
    ({"rating": {"gte": "5"}}, {"delta"}),  # strings compare as strings, only with strings
    ({"rating": {"in": [3, 5]}}, {"alpha", "beta"}),
    ({"rating": {"nin": [3, 5]}}, {"gamma", "delta"}),
    ({"note": {"contains": "World"}}, {"alpha"}),
    ({"note": {"contains": "world"}}, set()),
    ({"note": {"icontains": "WORLD"}}, {"alpha"}),
    ({"tags": {"contains": "x"}}, {"alpha"}),
    ({"tags": {"contains": "y"}}, {"alpha", "beta"}),
    ({"price": "*"}, {"gamma"}),
    ({"active": True}, {"alpha"}),
    ({"active": False}, {"beta"}),
    ({"nested.level": 2}, {"gamma"}),
    ({"actor_id": "alice"}, {"alpha", "delta"}),
    ({"actor_id": {"in": ["bob", "nobody"]}}, {"beta"}),
    ({"actor_id": {"ne": "alice"}}, {"beta", "gamma"}),
    ({"actor_id": "*"}, {"alpha", "beta", "delta"}),
    ({"role": "assistant"}, {"beta"}),
    ({"role": {"nin": ["assistant"]}}, {"alpha", "gamma", "delta"}),
    ({"actor_id": {"icontains": "ALI"}}, {"alpha", "delta"}),
    ({"observed_at": {"gte": "2024-02-10"}}, {"beta", "gamma", "delta"}),
    ({"observed_at": {"lte": "2024-02-10"}}, {"alpha", "beta"}),  # a bare date is the whole day
    ({"observed_at": {"gt": "2024-02-10"}}, {"gamma", "delta"}),
    ({"observed_at": {"lt": "2024-02-10T13:00:00Z"}}, {"alpha", "beta"}),
    ({"observed_at": "2024-03-10"}, {"gamma"}),
    ({"observed_at": {"ne": "2024-03-10"}}, {"alpha", "beta", "delta"}),
    ({"created_at": {"gte": "2000-01-01"}}, {"alpha", "beta", "gamma", "delta"}),
    ({"updated_at": {"lt": "2000-01-01"}}, set()),
    ({"rating": {"gte": 3, "lt": 5}}, {"beta", "gamma"}),  # two operators on one field are ANDed
    ({"category": "food", "rating": 5}, {"alpha"}),  # sibling keys are ANDed
    ({"OR": [{"category": "travel"}, {"rating": 4.5}]}, {"beta", "gamma"}),
    ({"AND": [{"category": "food"}, {"NOT": [{"rating": 5}]}]}, {"gamma"}),
    ({"NOT": [{"category": "food"}]}, {"beta", "delta"}),
    ({"NOT": [{"OR": [{"category": "food"}, {"actor_id": "bob"}]}]}, {"delta"}),
    (
        {"OR": [{"AND": [{"category": "food"}, {"rating": {"lt": 5}}]}, {"role": "assistant"}]},
        {"gamma", "beta"},
    ),
    ({"metadata": {"category": "travel"}}, {"beta"}),
    ({"$or": [{"category": {"$eq": "travel"}}, {"price": "*"}]}, {"beta", "gamma"}),
]


@pytest.mark.parametrize(("filters", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
async def test_operator(filled: AsyncMemory, filters: dict[str, Any], expected: set[str]) -> None:
    assert await texts(filled, filters) == expected


async def test_filters_apply_to_search_too(filled: AsyncMemory) -> None:
    found = await filled.search("alpha beta gamma delta", filters={"user_id": "u", "category": "food"})
    assert {r["memory"] for r in found["results"]} == {"alpha", "gamma"}


async def test_filter_never_widens_the_scope(filled: AsyncMemory) -> None:
    for filters in (
        {"user_id": "u", "OR": [{"user_id": "v"}, {"category": "food"}]},
        {"user_id": "u", "NOT": [{"user_id": "u"}]},
        {"user_id": "u", "category": "food", "OR": [{"user_id": "v"}]},
    ):
        found = await filled.search("epsilon other user food", filters=filters)
        assert all(r["user_id"] == "u" for r in found["results"]), filters


MALFORMED: list[tuple[Any, str]] = [
    ({"rating": {"between": [1, 2]}}, "filters.rating.between"),
    ({"rating": {"in": 3}}, "filters.rating.in"),
    ({"rating": {"in": []}}, "filters.rating.in"),
    ({"rating": {"gt": [1]}}, "filters.rating.gt"),
    ({"rating": {"gt": None}}, "filters.rating.gt"),
    ({"rating": {"gt": True}}, "filters.rating.gt"),
    ({"rating": {}}, "filters.rating"),
    ({"OR": {"a": 1}}, "filters.OR"),
    ({"OR": []}, "filters.OR"),
    ({"AND": [1, 2]}, "filters.AND[0]"),
    ({"AND": [{}]}, "filters.AND[0]"),
    ({"NOT": "x"}, "filters.NOT"),
    ({"bad key; DROP TABLE memories": 1}, "filters.bad key; DROP TABLE memories"),
    ({"a'b": 1}, "filters.a'b"),
    ({"role": 5}, "filters.role"),
    ({"actor_id": {"in": ["a", 1]}}, "filters.actor_id.in[1]"),
    ({"created_at": "yesterday"}, "filters.created_at"),
    ({"created_at": {"contains": "2024"}}, "filters.created_at.contains"),
    ({"note": {"icontains": 5}}, "filters.note.icontains"),
    ({"OR": [{"x": {"op": 1}}]}, "filters.OR[0].x.op"),
    ({"nested": {"deep": {"eq": 1}}}, "filters.nested.deep"),
    ([1, 2], "filters"),
]


@pytest.mark.parametrize(("filters", "path"), MALFORMED, ids=[repr(m[0]) for m in MALFORMED])
def test_malformed_filter_names_its_path(filters: Any, path: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filters(filters)
    assert info.value.path == path
    assert path in str(info.value)


async def test_malformed_filter_through_the_api_changes_nothing(filled: AsyncMemory) -> None:
    before = (await filled.get_all(user_id="u"))["total"]
    for filters, _ in MALFORMED[:-1]:
        with pytest.raises(FilterError):
            await filled.search("alpha", filters={"user_id": "u", **filters})
        with pytest.raises(FilterError):
            await filled.get_all(filters={"user_id": "u", **filters})
    assert (await filled.get_all(user_id="u"))["total"] == before


async def test_injection_attempts_in_values_are_plain_data(filled: AsyncMemory) -> None:
    evil = "x') OR 1=1; DROP TABLE memories; --"
    assert await texts(filled, {"category": evil}) == set()
    assert await texts(filled, {"note": {"contains": evil}}) == set()
    assert await texts(filled, {"actor_id": evil}) == set()
    assert len(await texts(filled, {})) == 4


def test_scope_comes_from_filters_or_kwargs() -> None:
    scope, tree = split_scope({"user_id": "a", "category": "x"}, kwargs_scope=Scope())
    assert scope == Scope(user_id="a")
    assert isinstance(tree, Cond) and tree.field.name == "category"
    scope, tree = split_scope({"AND": [{"user_id": "a"}, {"agent_id": "b"}, {"k": 1}]}, kwargs_scope=Scope())
    assert scope == Scope(user_id="a", agent_id="b") and isinstance(tree, Cond)
    scope, _ = split_scope(None, kwargs_scope=Scope(run_id="r"))
    assert scope == Scope(run_id="r")
    with pytest.raises(ValidationError, match="user_id is given twice"):
        split_scope({"user_id": "a"}, kwargs_scope=Scope(user_id="b"))


def test_tree_shapes() -> None:
    tree = parse_filters({"OR": [{"a": 1}, {"NOT": [{"b": {"gt": 2}}]}], "c": "*"})
    assert isinstance(tree, And)
    first, second = tree.children
    assert isinstance(first, Or) and isinstance(first.children[1], Not)
    assert isinstance(second, Cond) and second.op == "exists"


async def test_scope_is_required(filled: AsyncMemory) -> None:
    with pytest.raises(ScopeRequiredError):
        await filled.search("alpha", filters={"category": "food"})
    with pytest.raises(ScopeRequiredError):
        await filled.search("alpha", filters={"OR": [{"user_id": "u"}, {"user_id": "v"}]})
    with pytest.raises(ScopeRequiredError):
        await filled.get_all()
