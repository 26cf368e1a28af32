"""The offline extractor, table-driven: what it keeps, what it drops, and how it phrases facts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engram.extract.offline import (
    OfflineExtractor,
    facts_from_assistant,
    facts_from_user,
    split_sentences,
    third_person,
)
from engram.interfaces import ExtractionRequest
from engram.types import Scope, StoredMessage

OBSERVED = datetime(2024, 5, 10, 14, 0, tzinfo=UTC)  # a Friday

USER_CASES: list[tuple[str, list[str]]] = [
    # preferences
    ("I love sci-fi movies", ["alice loves sci-fi movies"]),
    (
        "I'm not a big fan of thriller movies but I love sci-fi movies.",
        ["alice is not a big fan of thriller movies", "alice loves sci-fi movies"],
    ),
    ("I really don't like mushrooms.", ["alice really doesn't like mushrooms"]),
    ("I hate waking up early", ["alice hates waking up early"]),
    (
        "My favorite color is blue; my dog is called Rex.",
        ["alice's favorite color is blue", "alice's dog is called Rex"],
    ),
    ("I'd love to visit Japan someday.", ["alice would love to visit Japan someday"]),
    ("I think you're great.", ["alice thinks the assistant is great"]),
    # biography
    (
        "Hi! My name is Alice and I work as a nurse in Boston.",
        ["alice's name is Alice", "alice works as a nurse in Boston"],
    ),
    ("I'm vegan.", ["alice is vegan"]),
    ("I study physics at MIT.", ["alice studies physics at MIT"]),
    ("I have two kids and I work from home.", ["alice has two kids", "alice works from home"]),
    ("I've been learning Spanish for 2 years.", ["alice has been learning Spanish for 2 years"]),
    ("I used to play the piano.", ["alice used to play the piano"]),
    ("Oh, by the way, I'm allergic to peanuts!", ["alice is allergic to peanuts"]),
    ("Remember that my birthday is on March 3rd.", ["alice's birthday is on March 3rd"]),
    # people they mention
    ("my sister Jane lives in Paris", ["alice's sister Jane lives in Paris"]),
    (
        "My brother Tom is a chef at a restaurant in Lyon.",
        ["alice's brother Tom is a chef at a restaurant in Lyon"],
    ),
    ("Jane just got promoted.", ["Jane just got promoted"]),
    # habits and plans, with dates resolved against the observation time
    ("I usually go running on Mondays.", ["alice usually goes running on Mondays"]),
    ("I watch anime every weekend.", ["alice watches anime every weekend"]),
    ("I'll be in Tokyo next week.", ["alice will be in Tokyo in the week of May 13, 2024"]),
    ("We moved to Madrid last month.", ["alice moved to Madrid in April 2024"]),
    ("We're expecting a baby next March.", ["alice is expecting a baby in March 2025"]),
    ("I went to Rome yesterday and I loved it.", ["alice went to Rome on May 9, 2024 and alice loved it"]),
    (
        "I'm planning to watch a movie tonight. Any recommendations?",
        ["alice is planning to watch a movie on the evening of May 10, 2024"],
    ),
    ("I have a dentist appointment next Tuesday.", ["alice has a dentist appointment on May 14, 2024"]),
    # dropped: greetings, thanks, questions, requests, filler, acknowledgements
    ("Thanks so much!", []),
    ("ok", []),
    ("lol", []),
    ("Good morning! How are you?", []),
    ("Can you recommend a book?", []),
    ("What's the weather like?", []),
    ("Call me Bob.", []),
    ("Please book a table for two.", []),
    ("I don't know.", []),
    ("Sure, sounds good!", []),
    ("I'm fine, thanks.", []),
    ("The weather is nice today.", []),
    ("Any tips for a first marathon?", []),
    ("Hmm, interesting.", []),
    ("It's special to me.", []),
    ("We last met in Paris.", ["alice last met in Paris"]),
    ("I wanna learn guitar.", ["alice wants to learn guitar"]),
    ("Allergies can be tough.", []),
    ("Gonna start a pottery class next month!", ["alice is going to start a pottery class in June 2024"]),
]

ASSISTANT_CASES: list[tuple[str, list[str]]] = [
    ("You mentioned that you love hiking.", ["alice loves hiking"]),
    ("You live in Berlin.", ["alice lives in Berlin"]),
    ("You're allergic to peanuts, so avoid that dish.", ["alice is allergic to peanuts"]),
    ("Your sister lives in Paris.", ["alice's sister lives in Paris"]),
    ("How about thriller movies? They can be quite engaging.", []),
    ("Got it! I'll avoid thriller recommendations and suggest sci-fi movies in the future.", []),
    ("You could try the new Thai place.", []),
    ("Your sister lives in Paris, right?", []),
    ("Hello! How can I help you today?", []),
    ("Paris is the capital of France.", []),
]


@pytest.mark.parametrize(("utterance", "expected"), USER_CASES, ids=[c[0][:40] for c in USER_CASES])
def test_user_utterances(utterance: str, expected: list[str]) -> None:
    assert facts_from_user(utterance, "alice", OBSERVED) == expected


@pytest.mark.parametrize(("utterance", "expected"), ASSISTANT_CASES, ids=[c[0][:40] for c in ASSISTANT_CASES])
def test_assistant_utterances(utterance: str, expected: list[str]) -> None:
    assert facts_from_assistant(utterance, "alice", "Assistant", OBSERVED) == expected


def test_table_covers_at_least_thirty_utterances() -> None:
    assert len(USER_CASES) + len(ASSISTANT_CASES) >= 30
    assert sum(1 for _, out in USER_CASES if not out) >= 10


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        ("love", "loves"),
        ("go", "goes"),
        ("watch", "watches"),
        ("study", "studies"),
        ("play", "plays"),
        ("have", "has"),
        ("am", "is"),
        ("don't", "doesn't"),
        ("moved", "moved"),
        ("can", "can"),
        ("went", "went"),
    ],
)
def test_third_person(verb: str, expected: str) -> None:
    assert third_person(verb) == expected


def test_sentence_split_keeps_abbreviations() -> None:
    assert split_sentences("I saw Dr. Smith today. He was nice!\nBye") == [
        "I saw Dr. Smith today.",
        "He was nice!",
        "Bye",
    ]


def _message(
    mid: str, role: str, content: str, name: str | None = None, user: str = "alice"
) -> StoredMessage:
    return StoredMessage(mid, Scope(user_id=user), role, content, name, OBSERVED, OBSERVED)


async def test_extract_names_speakers_and_keeps_provenance() -> None:
    request = ExtractionRequest(
        messages=[
            _message("m-1", "user", "Hi there! I love sci-fi movies. What should I watch?"),
            _message("m-2", "assistant", "You love sci-fi, so try Dune."),
            _message("m-3", "user", "My wife Sara is a pilot.", name="Bob"),
            _message("m-4", "system", "I am a system prompt with my rules."),
        ],
        recent=[],
        related=[],
        observed_at=OBSERVED,
    )
    result = await OfflineExtractor().extract(request)
    assert result.extractor == "offline"
    got = [(f.text, f.source_message_ids, f.role, f.actor_id) for f in result.facts]
    assert got == [
        ("alice loves sci-fi movies", ["m-1"], "user", None),
        ("alice loves sci-fi", ["m-2"], "assistant", None),
        ("Bob's wife Sara is a pilot", ["m-3"], "user", "Bob"),
    ]


async def test_you_between_two_people_is_the_other_person() -> None:
    request = ExtractionRequest(
        [
            _message("a", "user", "I adopted a puppy.", name="Mel"),
            _message("b", "user", "You've got a big heart. I have two cats.", name="Caro"),
        ],
        [],
        [],
        OBSERVED,
    )
    texts = [f.text for f in (await OfflineExtractor().extract(request)).facts]
    assert texts == ["Mel adopted a puppy", "Mel has got a big heart", "Caro has two cats"]


@pytest.mark.parametrize(("user_id", "subject"), [("alice", "alice"), ("u_123", "User"), ("user", "User")])
async def test_unknown_names_become_user(user_id: str, subject: str) -> None:
    request = ExtractionRequest([_message("m", "user", "I like tea.", user=user_id)], [], [], OBSERVED)
    (fact,) = (await OfflineExtractor().extract(request)).facts
    assert fact.text == f"{subject} likes tea"


async def test_deterministic() -> None:
    request = ExtractionRequest([_message("m", "user", "I love jazz. I live in Oslo.")], [], [], OBSERVED)
    first = await OfflineExtractor().extract(request)
    second = await OfflineExtractor().extract(request)
    assert (
        [f.text for f in first.facts]
        == [f.text for f in second.facts]
        == ["alice loves jazz", "alice lives in Oslo"]
    )
