"""OfflineExtractor: deterministic, rule-based fact extraction with no model at all.

It splits messages into sentences and clauses, keeps informative first-person statements
(preferences, plans, biographical facts, people the speaker mentions) and rewrites them as
third-person facts about the speaker ("I love sci-fi movies" -> "alice loves sci-fi movies"),
resolves a few relative dates against the observation time, and drops greetings, thanks, questions,
requests and filler. From assistant turns it keeps only plain statements about the user ("You live
in Berlin"). It is English-only and pattern-based: see docs/inference.md for its limits.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta

from engram.extract.speakers import speaker_name
from engram.interfaces import ExtractedFact, ExtractionRequest, ExtractionResult, Extractor

_ABBREVIATIONS = re.compile(r"\b(Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|vs|etc|e\.g|i\.e|approx|Inc|Ltd|No)\.", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n+")
_INTERJECTION = re.compile(
    r"^(?:oh|ah|aw|well|so|yeah|yes|yep|yup|no|nope|nah|ok|okay|hey|hi|hello|um|uh|hmm+|actually|"
    r"honestly|btw|by the way|anyway|anyways|also|and|but|lol|haha+|wow|great|cool|nice|sure|right|"
    r"alright|thanks|thank you|oh well|fun fact|funny enough)\b[\s,!.:;-]+",
    re.I,
)
_PREFACE = re.compile(
    r"^(?:just so you know|for the record|fyi|to be honest|tbh|as i said|like i said|as i mentioned|"
    r"please (?:remember|note)(?: that)?|remember(?: that)?|note that|keep in mind(?: that)?|"
    r"i (?:told|tell) you(?: that)?|i wanted to (?:let you know|tell you|mention)(?: that)?|"
    r"i should mention(?: that)?|let me tell you|you should know(?: that)?|"
    r"as you (?:mentioned|said|told me)|you (?:mentioned|said|told me)(?: that)?|"
    r"(?:it )?(?:sounds|seems) like|i see that|i understand that|i remember that)\b[\s,:;-]*",
    re.I,
)
_FILLER = re.compile(
    r"^(?:hi|hello|hey|hey there|hiya|yo|greetings|good (?:morning|afternoon|evening|night|day)|"
    r"how are you(?: doing)?(?: today)?|how's it going|what's up|nice to (?:meet|see) you|bye|goodbye|"
    r"see (?:you|ya)(?: later| soon)?|talk (?:to you )?(?:later|soon)|take care|have a (?:nice|good|great) "
    r"(?:day|one|evening|weekend)|thanks?(?: you)?(?: so much| a lot| very much| again)*|thx|ty|"
    r"much appreciated|appreciate it|i appreciate (?:it|that|your help)|ok(?:ay)?|sure(?: thing)?|"
    r"got it|sounds (?:good|great)|great|cool|awesome|perfect|nice|no problem|no worries|"
    r"you're welcome|welcome|yes|no|yeah|nope|maybe|i see|i agree|i understand|that makes sense|"
    r"makes sense|me too|exactly|of course|lol|haha+|hmm+|interesting|wow|good (?:idea|point)|"
    r"that's (?:great|good|cool|nice|awesome|interesting|fine|ok|okay|true|right)|right|fine|done|"
    r"(?:i'm|i am) (?:fine|good|ok|okay|great|well|doing (?:well|good|great|fine|ok|okay)|back|here|"
    r"not sure|sure|sorry|just curious|curious|excited|ready|glad|happy to hear that)|"
    r"i (?:don't|do not) know|i guess(?: so)?|i think so|i hope so|i have a question|i was wondering|"
    r"i need (?:some )?help|i'll (?:try|do that|think about it|check it out|keep that in mind|"
    r"let you know)|i will|will do|i did|i do|i can|i know|same here|not really|not yet|never mind)$",
    re.I,
)
_REQUEST = re.compile(
    r"^(?:please|can|could|would|will|should|shall|do|does|did|is|are|was|were|am|what|how|why|when|"
    r"where|who|whom|whose|which|any|tell|give|show|help|let|let's|find|recommend|suggest|make|remind|"
    r"book|send|write|check|play|search|look|try|get|list|explain|describe|add|set|create|draft|"
    r"translate|summarize|compare|buy|order|call|email|schedule|don't|do not|i (?:want|need|would like|"
    r"'d like) you to|i'd like to know|i want to know|i wonder)\b",
    re.I,
)
_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|I'll|my|me|mine|myself|we|we're|we've|our|us)\b", re.I)
_STARTERS = {
    "the", "a", "an", "this", "that", "these", "those", "it", "there", "here", "today", "tonight",
    "yesterday", "tomorrow", "everyone", "everybody", "someone", "nobody", "people", "he", "she",
    "they", "his", "her", "their", "its", "if", "when", "because", "maybe", "perhaps",
}  # fmt: skip
_NAME_VERBS = {
    "is", "was", "has", "had", "lives", "lived", "works", "worked", "loves", "likes", "hates",
    "just", "got", "moved", "started", "studies", "plays", "wants", "needs", "became", "married",
    "turned", "owns", "runs", "teaches", "goes", "went",
}  # fmt: skip
_CLAUSE_SPLIT = re.compile(
    r",?\s+(?:but|and|although|though|whereas|while|plus)\s+(?=(?:I|I'm|I've|I'd|I'll|my|My)\b)|;\s+"
)
_TRAILING_FILLER = re.compile(
    r"(?:[,\s]+(?:thanks|thank you|thx|lol|haha+|please|tbh|though|btw|anyway|:\)|:d))+\W*$", re.I
)
_ASSISTANT_TAIL = re.compile(r",\s+(?:so|which|and that|but|and I)\b.*$", re.I)
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_DANGLING = re.compile(r"\b(?:it|this|that|them|there|those|these|one)\b", re.I)
_ADVERBS = {
    "really", "also", "just", "usually", "always", "never", "often", "sometimes", "actually",
    "still", "absolutely", "totally", "definitely", "recently", "finally", "currently", "mostly",
    "generally", "rarely", "seldom", "only", "even", "already", "truly", "honestly", "sort",
    "kind", "of", "now", "no", "longer", "mainly", "especially", "probably", "certainly",
    "last", "first", "once", "all", "both", "together", "each", "ever", "soon",
}  # fmt: skip
_UNCHANGED = {
    "can", "could", "will", "would", "shall", "should", "may", "might", "must", "did", "had",
    "was", "used", "ought", "can't", "cannot", "couldn't", "won't", "wouldn't", "shouldn't",
    "didn't", "hadn't", "wasn't", "mustn't", "went", "got", "bought", "made", "took", "saw", "met",
    "left", "came", "began", "found", "felt", "knew", "lost", "ran", "said", "sent", "sold",
    "spent", "thought", "told", "wore", "won", "wrote", "grew", "became", "broke", "built",
    "caught", "chose", "drove", "ate", "fell", "flew", "forgot", "gave", "heard", "held", "kept",
    "led", "paid", "put", "rode", "sang", "sat", "slept", "spoke", "stood", "swam", "taught",
    "understood", "woke", "quit", "read", "set", "cut", "let", "hit", "hurt",
    "lent", "dreamt", "learnt", "meant", "brought", "fought", "sought", "drank", "swore",
}  # fmt: skip
_IRREGULAR = {
    "am": "is", "are": "is", "were": "was", "have": "has", "do": "does", "go": "goes",
    "don't": "doesn't", "haven't": "hasn't", "aren't": "isn't", "weren't": "wasn't",
    "'m": "is", "'re": "is", "'ve": "has", "'d": "would", "'ll": "will",
}  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|[^A-Za-z]+")
_SUBJECT_BEFORE = {None, "that", "and", "but", "because", "since", "as", "if", "when", "so", "or", "while"}
_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}


def split_sentences(text: str) -> list[str]:
    """Sentences of a message (newlines and ., !, ? end one; common abbreviations do not)."""
    protected = _ABBREVIATIONS.sub(lambda m: m.group(0).replace(".", "\x00"), text.replace("’", "'"))
    parts = (p.replace("\x00", ".").strip() for p in _SENTENCE_END.split(protected))
    return [p for p in parts if p]


def third_person(verb: str) -> str:
    """Conjugate a verb that followed "I"/"we"/"you" for a third-person singular subject."""
    low = verb.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if low in _UNCHANGED or low.endswith("ed") or low.endswith("n't"):
        return verb
    if re.search(r"(?:s|sh|ch|x|z|o)$", low):
        return verb + "es"
    if re.search(r"[^aeiou]y$", low):
        return verb[:-1] + "ies"
    return verb + "s"


def _contraction(token: str) -> tuple[str, str | None]:
    """Split "I'm" into ("I", "'m"); other words into (word, None)."""
    if "'" in token:
        head, tail = token.split("'", 1)
        if head.lower() in {"i", "we", "you"} and tail.lower() in {"m", "re", "ve", "d", "ll"}:
            return head, "'" + tail.lower()
    return token, None


def rewrite(text: str, *, me: str, you: str) -> str:
    """Rewrite first person as ``me`` and second person as ``you`` (both treated as third person)."""
    tokens = _TOKEN.findall(text)
    out: list[str] = []
    pending = False  # a replaced subject is waiting for its verb
    previous: str | None = None
    for token in tokens:
        if not token[0].isalpha():
            out.append(token)
            continue
        word, tail = _contraction(token)
        low = word.lower()
        subject = None
        if low in ("i", "we") or (low == "you" and (previous in _SUBJECT_BEFORE or tail)):
            subject = me if low in ("i", "we") else you
        if subject is not None:
            out.append(subject)
            if tail:
                out.append(" " + _IRREGULAR[tail])
                pending = False
            else:
                pending = True
        elif low in ("my", "our", "mine", "ours"):
            out.append(f"{me}'s")
        elif low in ("your", "yours"):
            out.append(f"{you}'s")
        elif low in ("me", "us"):
            out.append(me)
        elif low == "you":
            out.append(you)
        elif low in ("myself", "ourselves", "yourself"):
            out.append("themselves")
        elif pending:
            if low in _ADVERBS:
                out.append(token)
            else:
                out.append(third_person(token))
                pending = False
        else:
            out.append(token)
        previous = low
    return "".join(out)


def _fmt(day: date) -> str:
    return f"{calendar.month_name[day.month]} {day.day}, {day.year}"


def _month_shift(day: date, months: int) -> str:
    index = day.year * 12 + day.month - 1 + months
    return f"{calendar.month_name[index % 12 + 1]} {index // 12}"


def resolve_dates(text: str, observed: datetime) -> str:
    """Replace simple relative dates ("yesterday", "next month", "last Friday") with absolute ones."""
    day = observed.date()
    monday = day - timedelta(days=day.weekday())
    saturday = day + timedelta(days=(5 - day.weekday()) % 7)
    table: list[tuple[str, str]] = [
        (r"\bthis (morning|afternoon|evening)\b", rf"on the \1 of {_fmt(day)}"),
        (r"\btonight\b", f"on the evening of {_fmt(day)}"),
        (r"\btoday\b", f"on {_fmt(day)}"),
        (r"\byesterday\b", f"on {_fmt(day - timedelta(days=1))}"),
        (r"\btomorrow\b", f"on {_fmt(day + timedelta(days=1))}"),
        (r"\bnext week\b", f"in the week of {_fmt(monday + timedelta(days=7))}"),
        (r"\blast week\b", f"in the week of {_fmt(monday - timedelta(days=7))}"),
        (r"\bthis week\b", f"in the week of {_fmt(monday)}"),
        (r"\bthis weekend\b", f"on the weekend of {_fmt(saturday)}"),
        (r"\bnext month\b", f"in {_month_shift(day, 1)}"),
        (r"\blast month\b", f"in {_month_shift(day, -1)}"),
        (r"\bthis month\b", f"in {_month_shift(day, 0)}"),
        (r"\bnext year\b", f"in {day.year + 1}"),
        (r"\blast year\b", f"in {day.year - 1}"),
        (r"\bthis year\b", f"in {day.year}"),
    ]
    for pattern, replacement in table:
        text = re.sub(pattern, replacement, text, flags=re.I)

    def weekday(match: re.Match[str]) -> str:
        which, name = match.group(1).lower(), match.group(2).lower()
        target = _WEEKDAYS[name]
        if which == "next":
            delta = (target - day.weekday()) % 7 or 7
            return f"on {_fmt(day + timedelta(days=delta))}"
        delta = (day.weekday() - target) % 7 or 7
        return f"on {_fmt(day - timedelta(days=delta))}"

    names = "|".join(_WEEKDAYS)
    text = re.sub(rf"\b(next|last) ({names})\b", weekday, text, flags=re.I)

    def month(match: re.Match[str]) -> str:
        which, number = match.group(1).lower(), _MONTHS[match.group(2).lower()]
        if which == "next":
            year = day.year if number > day.month else day.year + 1
        else:
            year = day.year if number < day.month else day.year - 1
        return f"in {calendar.month_name[number]} {year}"

    months = "|".join(_MONTHS)
    text = re.sub(rf"\b(next|last) ({months})\b", month, text, flags=re.I)
    return re.sub(r"\b(\d{1,2}) years ago\b", lambda m: f"in {day.year - int(m.group(1))}", text, flags=re.I)


def _strip_openers(sentence: str) -> str:
    previous = None
    while previous != sentence:
        previous = sentence
        sentence = _TRAILING_FILLER.sub("", sentence).strip()
        sentence = _INTERJECTION.sub("", sentence, count=1).strip()
        sentence = _PREFACE.sub("", sentence, count=1).strip()
    return sentence


def _clauses(sentence: str) -> list[str]:
    parts = [p.strip(" ,;") for p in _CLAUSE_SPLIT.split(sentence) if p and p.strip(" ,;")]
    merged: list[str] = []
    for part in parts:
        if merged and _DANGLING.search(part):
            merged[-1] = f"{merged[-1]} and {part}"
        else:
            merged.append(part)
    return merged


_SLANG_MAP = {"gonna": "going to", "wanna": "want to", "gotta": "have to"}
_SLANG = re.compile(r"\b(?:gonna|wanna|gotta)\b", re.I)
_PRONOUN_SUBJECTS = {"it", "this", "that", "these", "those", "they", "he", "she", "there", "here", "which"}
_SUBJECTLESS = re.compile(r"^(?:going to|planning to|hoping to|about to)\b", re.I)


def _informative_user(clause: str) -> bool:
    words = clause.split()
    if len(words) < 2 or len(clause) < 6:
        return False
    if re.sub(r"'s$", "", words[0].lower()) in _PRONOUN_SUBJECTS:
        return False  # "It's special to me": cannot stand on its own
    if _FIRST_PERSON.search(clause):
        return True
    first, second = words[0].strip(",.!"), words[1].strip(",.!").lower()
    return first[:1].isupper() and first.lower() not in _STARTERS and second in _NAME_VERBS


def _clean(sentence: str) -> str:
    return re.sub(r"\s+", " ", sentence).strip().rstrip(".!…;:,").strip()


def facts_from_user(
    text: str, speaker: str, observed: datetime, *, listener: str = "the assistant"
) -> list[str]:
    """Facts in one user message, phrased about ``speaker`` ("you" becomes ``listener``)."""
    facts: list[str] = []
    for raw in split_sentences(text):
        if raw.rstrip().endswith("?"):
            continue
        sentence = _clean(_strip_openers(_clean(_SLANG.sub(lambda m: _SLANG_MAP[m.group(0).lower()], raw))))
        if not sentence or _FILLER.match(sentence) or _REQUEST.match(sentence):
            continue
        for clause in _clauses(sentence):
            clause = _clean(clause)
            if _SUBJECTLESS.match(clause):
                clause = "I'm " + clause
            if not clause or _FILLER.match(clause) or not _informative_user(clause):
                continue
            facts.append(_clean(resolve_dates(rewrite(clause, me=speaker, you=listener), observed)))
    return facts


_ABOUT_USER = re.compile(
    r"^(?:you(?:'re| are| were| have| had|'ve| live| lived| work| worked| love| loved| like| liked|"
    r" prefer| enjoy| hate| dislike| own| moved| used to| grew up| studied| study| speak| play| plan|"
    r"'re planning| are planning| just| recently| also| don't| do not| can't| cannot| never| always|"
    r" usually)\b|your (?!welcome)\w+(?: \w+)? (?:is|are|was|were|lives|works|has|likes|loves)\b)",
    re.I,
)
_SUGGESTION = re.compile(
    r"\b(?:could|should|might|may|can|would|will|want to|need to|try|consider|'d|'ll|welcome|"
    r"right|correct)\b",
    re.I,
)


def facts_from_assistant(text: str, user: str, assistant: str, observed: datetime) -> list[str]:
    """Plain statements an assistant makes about the user ("You live in Berlin"); nothing else."""
    facts: list[str] = []
    for raw in split_sentences(text):
        if raw.rstrip().endswith("?"):
            continue
        sentence = _clean(_strip_openers(_clean(raw)))
        sentence = _ASSISTANT_TAIL.sub("", sentence)
        if not _ABOUT_USER.match(sentence) or _SUGGESTION.search(sentence) or _FILLER.match(sentence):
            continue
        facts.append(_clean(resolve_dates(rewrite(sentence, me=assistant, you=user), observed)))
    return facts


class OfflineExtractor(Extractor):
    """Deterministic rule-based extractor used when no LLM is configured (English only)."""

    @property
    def name(self) -> str:
        return "offline"

    async def extract(self, request: ExtractionRequest) -> ExtractionResult:
        """Facts from every user and assistant message of the request, in order."""
        users = [m for m in [*request.messages, *request.recent] if m.role.lower() in ("user", "human")]
        user_label = speaker_name(users[0]) if users else "User"
        humans = list(dict.fromkeys(speaker_name(m) for m in users))
        facts: list[ExtractedFact] = []
        seen: set[str] = set()
        for message in request.messages:
            role = message.role.lower()
            if role not in ("user", "human", "assistant", "ai") or not message.content.strip():
                continue  # system, tool and function messages say nothing about the speaker
            speaker = speaker_name(message)
            if role in ("assistant", "ai"):
                texts = facts_from_assistant(message.content, user_label, speaker, request.observed_at)
            else:
                others = [h for h in humans if h != speaker]
                listener = others[0] if len(others) == 1 else "the assistant"
                texts = facts_from_user(message.content, speaker, request.observed_at, listener=listener)
            for text in texts:
                if text.lower() in seen or len(text) < 6:
                    continue
                seen.add(text.lower())
                facts.append(ExtractedFact(text, [message.id], message.name, message.role))
        return ExtractionResult(facts=facts, extractor=self.name)
