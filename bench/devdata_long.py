# ruff: noqa: E501
# fmt: off
"""Long assistant answers (markdown, code, 5-50k characters) with details planted in their middle.

Written for Engram's benchmarks. Filler is built from per-domain sentence templates and code snippets;
each answer carries 1-3 planted details, each with a keyword question and a paraphrase question.
"""

from __future__ import annotations

import random
from typing import Any

DOMAINS: dict[str, dict[str, list[str]]] = {
    "ops": {"noun": ["deployment", "cluster", "load balancer", "container image", "health check", "release branch",
                     "service mesh", "staging environment", "rollback plan", "alerting rule", "secret store"],
            "verb": ["configure", "monitor", "tag", "roll out", "validate", "document", "scale", "restart"],
            "ask": ["Can you walk me through setting up our deployment pipeline end to end?",
                    "Write a runbook for moving our services to the new cluster.",
                    "How should we structure our infrastructure repository?"]},
    "cook": {"noun": ["dough", "stock", "marinade", "oven tray", "spice mix", "sauce", "pastry", "stand mixer",
                      "cast-iron pan", "meal plan"],
             "verb": ["simmer", "whisk", "season", "roast", "fold", "chill", "taste", "prepare"],
             "ask": ["Give me a detailed weekend baking plan.", "Plan all the cooking for a dinner party of eight.",
                     "Explain how to batch-cook for a whole month."]},
    "travel": {"noun": ["itinerary", "ferry", "rail pass", "guesthouse", "day hike", "museum pass", "rental car",
                        "border crossing", "packing list", "travel insurance"],
               "verb": ["book", "compare", "reserve", "pack", "confirm", "plan", "check", "print"],
               "ask": ["Plan a three-week trip through the islands for us.", "Build me a complete travel checklist.",
                       "How do we organise a road trip with kids?"]},
    "fitness": {"noun": ["training block", "warm-up", "deload week", "long run", "mobility routine", "rest day",
                         "squat session", "heart-rate zone", "protein intake", "recovery plan"],
                "verb": ["track", "increase", "schedule", "stretch", "log", "adjust", "repeat", "recover"],
                "ask": ["Write me a full strength and running programme.", "How do I prepare for my first marathon?",
                        "Design a home workout plan for the next twelve weeks."]},
    "home": {"noun": ["wall plug", "skirting board", "boiler", "radiator valve", "paint finish", "shelf bracket",
                      "extractor fan", "smoke alarm", "garden bed", "fuse box"],
             "verb": ["measure", "sand", "seal", "inspect", "replace", "fit", "paint", "tighten"],
             "ask": ["Give me a complete plan to renovate the hallway.", "What maintenance does a house need each season?",
                     "How do I set up a small home workshop?"]},
    "money": {"noun": ["budget", "savings pot", "direct debit", "pension contribution", "tax return", "spreadsheet",
                       "emergency fund", "credit card", "mortgage offer", "index fund"],
              "verb": ["review", "categorise", "automate", "compare", "record", "reduce", "transfer", "plan"],
              "ask": ["Help me build a household budget system from scratch.", "Explain how to plan our finances for next year.",
                      "How should we organise paperwork for the tax return?"]},
}
SENTENCES = [
    "Before you {v} the {n}, make sure the {n2} is ready, because fixing it later costs far more time.",
    "A common mistake is to {v} the {n} once and forget it; put a reminder in the calendar instead.",
    "If the {n} behaves strangely, {v} the {n2} first and only then change anything else.",
    "Keep notes on how you {v} the {n}, so the next person does not have to guess.",
    "Most people find it easier to {v} the {n} in small steps than in one big push.",
    "The {n} and the {n2} depend on each other, so plan both together.",
    "Try to {v} the {n} at a quiet moment; rushing it is where errors creep in.",
    "There is no single right answer for the {n}, but a consistent routine beats a perfect one.",
    "When in doubt, {v} the {n2} and compare it with last time before deciding.",
    "It helps to write down why you chose this {n}, because the reasons fade quickly.",
]
CODE = [
    "```python\ndef {f}(items):\n    result = []\n    for item in items:\n        if item.get('{k}'):\n"
    "            result.append(item['{k}'])\n    return sorted(result)\n```",
    "```bash\nset -euo pipefail\nfor f in ./{k}/*.txt; do\n  echo \"processing $f\"\n  wc -l \"$f\"\ndone\n```",
    "```yaml\n{k}:\n  enabled: true\n  retries: 3\n  owner: {f}\n  notes: \"review monthly\"\n```",
    "| step | owner | status |\n|---|---|---|\n| {k} | {f} | open |\n| review | team | planned |",
]
DETAILS: list[dict[str, Any]] = [
    {"t": "The staging database lives on port {x}, not the default one.", "x": ["5544", "6543", "7432", "5499"],
     "keyword": "Which port does the staging database use?",
     "paraphrase": "Where do I connect to reach the pre-production data store?"},
    {"t": "Rotate the API keys every {x} days; the auditors flagged the old policy.", "x": ["30", "45", "60", "90"],
     "keyword": "How often should the API keys be rotated?",
     "paraphrase": "What's the interval for swapping out credentials according to the audit?"},
    {"t": "For the sourdough, let the dough rest for {x} hours in the fridge before shaping.", "x": ["12", "14", "16", "18"],
     "keyword": "How long should the sourdough dough rest in the fridge?",
     "paraphrase": "How much cold proofing time does the bread need before I form the loaf?"},
    {"t": "Book the ferry from Naxos at {x}, because the later sailing is often cancelled in wind.",
     "x": ["7:15", "8:40", "9:05", "6:50"], "keyword": "What time is the ferry from Naxos?",
     "paraphrase": "Which boat departure should I catch to avoid weather cancellations?"},
    {"t": "The monthly grocery budget is capped at {x} euros.", "x": ["420", "380", "515", "460"],
     "keyword": "What is the monthly grocery budget cap?",
     "paraphrase": "How much can we spend on food shopping each month?"},
    {"t": "Your deadlift working sets should stay at {x} kg until the form check.", "x": ["70", "85", "92.5", "100"],
     "keyword": "What weight should the deadlift working sets be?",
     "paraphrase": "How heavy should my main pulling lift be before the technique review?"},
    {"t": "The migration script must run with the --{x} flag or it will lock the orders table.",
     "x": ["online", "no-lock", "batched", "concurrent"], "keyword": "Which flag must the migration script run with?",
     "paraphrase": "What option keeps the schema change from blocking other writers?"},
    {"t": "The Wi-Fi password for the cabin is {x}.", "x": ["pinecone42", "lakeview-77", "moosetrack9", "fjord2020"],
     "keyword": "What is the cabin Wi-Fi password?", "paraphrase": "How do I get online at the holiday lodge?"},
    {"t": "Cache entries expire after {x} seconds by default in this setup.", "x": ["300", "90", "1800", "45"],
     "keyword": "After how many seconds do cache entries expire?",
     "paraphrase": "How long is stored lookup data kept before it's thrown away?"},
    {"t": "The team retro happens every other {x} at 3 pm.", "x": ["Tuesday", "Wednesday", "Thursday", "Friday"],
     "keyword": "When is the team retro?", "paraphrase": "On which day do we look back on the sprint together?"},
    {"t": "Use a {x} mm drill bit for the wall plugs in the hallway.", "x": ["6", "7", "8", "5"],
     "keyword": "What size drill bit for the wall plugs?",
     "paraphrase": "How wide a hole should I bore to mount things in the corridor?"},
    {"t": "The vet said the dog should get no more than {x} grams of dry food per day.", "x": ["180", "240", "310", "150"],
     "keyword": "How many grams of dry food can the dog have per day?",
     "paraphrase": "What's the daily kibble limit the animal doctor set?"},
    {"t": "Application logs are shipped to the {x} bucket in the eu-west region.",
     "x": ["acme-logs-prod", "trace-archive-7", "ops-coldstore", "logsink-main"],
     "keyword": "Which bucket are the application logs shipped to?",
     "paraphrase": "Where do our service traces end up being stored?"},
    {"t": "The visa appointment at the consulate is on {x}.", "x": ["14 March", "2 June", "21 September", "9 November"],
     "keyword": "When is the visa appointment at the consulate?",
     "paraphrase": "What day do I go to the embassy office for my travel permit?"},
    {"t": "Water the fiddle-leaf fig only when the top {x} cm of soil is dry.", "x": ["3", "4", "5", "2"],
     "keyword": "When should I water the fiddle-leaf fig?", "paraphrase": "How do I know the houseplant needs a drink?"},
    {"t": "Our retry policy uses exponential backoff starting at {x} milliseconds.", "x": ["250", "400", "750", "100"],
     "keyword": "What does the exponential backoff start at?",
     "paraphrase": "How long is the first pause before trying a failed request again?"},
    {"t": "The mortgage fixed rate of {x}% runs until 2029.", "x": ["3.85", "4.1", "4.45", "3.6"],
     "keyword": "What is the mortgage fixed rate?", "paraphrase": "What interest did we lock in for the home loan?"},
    {"t": "The container memory limit is {x} MiB for the worker pods.", "x": ["768", "1536", "2048", "512"],
     "keyword": "What is the container memory limit for the worker pods?",
     "paraphrase": "How much RAM does each background job get?"},
    {"t": "The marathon plan peaks with a {x} km long run three weeks before race day.", "x": ["32", "34", "30", "35"],
     "keyword": "How long is the peak long run in the marathon plan?",
     "paraphrase": "What's the furthest distance I'll cover in training before the race?"},
    {"t": "Tokens in the sandbox environment are prefixed with {x}.", "x": ["sbx_", "test-", "dev0_", "sand_"],
     "keyword": "What prefix do sandbox tokens have?", "paraphrase": "How can I tell a test-environment credential apart?"},
]


def _sentence(rng: random.Random, dom: dict[str, list[str]]) -> str:
    n, n2 = rng.sample(dom["noun"], 2)
    return rng.choice(SENTENCES).format(v=rng.choice(dom["verb"]), n=n, n2=n2)


def _section(rng: random.Random, dom: dict[str, list[str]], number: int) -> str:
    title = f"## {number}. {rng.choice(dom['verb']).capitalize()} the {rng.choice(dom['noun'])}"
    paras = [" ".join(_sentence(rng, dom) for _ in range(rng.randint(3, 6))) for _ in range(rng.randint(1, 3))]
    parts = [title, *paras]
    if rng.random() < 0.5:
        parts.append("\n".join(f"- {_sentence(rng, dom)}" for _ in range(rng.randint(2, 4))))
    if rng.random() < 0.4:
        key = rng.choice(dom["noun"]).replace(" ", "_")
        parts.append(rng.choice(CODE).format(f=f"{rng.choice(dom['verb'])}_{key}", k=key))
    return "\n\n".join(parts)


def long_answer(rng: random.Random, domain: str, chars: int, details: list[str]) -> str:
    """Sections until ``chars``; the detail sentences are placed in sections between 30% and 70%."""
    dom = DOMAINS[domain]
    sections: list[str] = []
    while sum(len(s) + 2 for s in sections) < chars:
        sections.append(_section(rng, dom, len(sections) + 1))
    lo, hi = int(len(sections) * 0.3), max(int(len(sections) * 0.7), int(len(sections) * 0.3) + 1)
    for detail in details:
        i = rng.randrange(lo, hi)
        sections[i] = sections[i] + "\n\n" + f"{_sentence(rng, dom)} {detail} {_sentence(rng, dom)}"
    return "\n\n".join(sections)
