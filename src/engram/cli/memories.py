"""``engram get | update | delete | delete-all | history | sources | users | stats``."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Annotated, Any

import typer
from rich.markup import escape

from engram.cli.output import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    AgentOpt,
    AppOpt,
    JsonOpt,
    NamespaceOpt,
    ProjectOpt,
    RunOpt,
    UserOpt,
    fail,
    json_option,
    run,
    show,
    table,
)
from engram.memory import AsyncMemory
from engram.types import SCOPE_FIELDS

IdArg = Annotated[str, typer.Argument(help="The memory's id.", show_default=False)]


def get(
    memory_id: IdArg, as_json: JsonOpt = False, namespace: NamespaceOpt = None, project: ProjectOpt = None
) -> None:
    """Show one memory."""
    item = run(lambda m: m.get(memory_id), namespace, project)
    if item is None:
        raise fail(f"memory {memory_id!r} not found", EXIT_NOT_FOUND)
    rows = [{"field": k, "value": v} for k, v in item.items() if v not in (None, [], {})]
    show(item, as_json, lambda: table(f"Memory {memory_id}", rows, ["field", "value"]))


def update(
    memory_id: IdArg,
    text: Annotated[str | None, typer.Option(help="The new text.", show_default=False)] = None,
    metadata: Annotated[
        str | None,
        typer.Option(metavar="JSON", help="New metadata (a JSON object); replaces it.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
    namespace: NamespaceOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Change a memory's text and/or metadata (kept in its history)."""
    meta = json_option(metadata, "--metadata")
    if text is None and meta is None:
        raise fail("give --text and/or --metadata", EXIT_USAGE)
    result = run(lambda m: m.update(memory_id, text, meta), namespace, project)
    show(result, as_json, lambda: f"updated {memory_id}: {escape(result['memory'])}")


def delete(
    memory_id: IdArg, as_json: JsonOpt = False, namespace: NamespaceOpt = None, project: ProjectOpt = None
) -> None:
    """Delete one memory (its history keeps the text)."""
    result = run(lambda m: m.delete(memory_id), namespace, project)
    show(result, as_json, lambda: f"deleted {memory_id}")


def delete_all(
    user: UserOpt = None,
    agent: AgentOpt = None,
    app: AppOpt = None,
    run_id: RunOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
    ] = False,
    as_json: JsonOpt = False,
    namespace: NamespaceOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Delete every memory of one scope (needs --user, --agent, --app or --run)."""
    scope = {k: v for k, v in zip(SCOPE_FIELDS, (user, agent, app, run_id), strict=True) if v}
    if not scope:
        raise fail("delete-all needs a scope: --user, --agent, --app or --run", EXIT_USAGE)
    described = ", ".join(f"{k}={v}" for k, v in scope.items())
    if not yes:
        if not sys.stdin.isatty():
            raise fail(f"refusing to delete every memory of {described} without --yes", EXIT_USAGE)
        typer.confirm(f"Delete every memory of {described}?", abort=True)
    result = run(lambda m: m.delete_all(**scope), namespace, project)
    show(result, as_json, lambda: f"deleted {result['deleted']} memories of {escape(described)}")


def history(
    memory_id: IdArg, as_json: JsonOpt = False, namespace: NamespaceOpt = None, project: ProjectOpt = None
) -> None:
    """Every change of one memory, oldest first."""
    changes = run(lambda m: m.history(memory_id), namespace, project)
    if not changes:
        raise fail(f"memory {memory_id!r} not found (it has no history)", EXIT_NOT_FOUND)
    show(
        changes,
        as_json,
        lambda: table(
            f"History of {memory_id}", changes, ["created_at", "event", "old_memory", "new_memory"]
        ),
    )


def sources(
    memory_id: IdArg, as_json: JsonOpt = False, namespace: NamespaceOpt = None, project: ProjectOpt = None
) -> None:
    """The raw messages a memory came from."""
    messages = run(lambda m: m.sources(memory_id), namespace, project)
    show(
        messages,
        as_json,
        lambda: table(f"Sources of {memory_id}", messages, ["observed_at", "role", "name", "content"]),
    )


async def _census(memory: AsyncMemory) -> dict[str, Any]:
    """One pass over every memory of the namespace: counts by scope id and by state."""
    from engram.transfer import walk_records
    from engram.types import utcnow

    today = utcnow().date()
    entities: dict[str, Counter[str]] = {field: Counter() for field in SCOPE_FIELDS}
    states: Counter[str] = Counter()
    async for record, _ in walk_records(memory):
        expired = record.expires_at is not None and record.expires_at < today
        state = "superseded" if record.superseded_by else "expired" if expired else "current"
        states[state] += 1
        if state == "current":
            for field, value in record.scope.given().items():
                entities[field][value] += 1
    return {"entities": entities, "states": states}


def users(as_json: JsonOpt = False, namespace: NamespaceOpt = None, project: ProjectOpt = None) -> None:
    """Who has memories: every user, agent, app and run id, with its number of current memories."""
    census = run(_census, namespace, project)
    rows = [
        {"type": field.removesuffix("_id"), "id": value, "memories": count}
        for field, counter in census["entities"].items()
        for value, count in sorted(counter.items())
    ]
    show({"results": rows}, as_json, lambda: table(f"{len(rows)} entities", rows, ["type", "id", "memories"]))


def stats(as_json: JsonOpt = False, namespace: NamespaceOpt = None, project: ProjectOpt = None) -> None:
    """How many memories, in which state, for how many users; which store and embedder."""

    async def go(memory: AsyncMemory) -> dict[str, Any]:
        census = await _census(memory)
        info = memory.embedder.info
        return {
            "namespace": memory.namespace,
            "store": type(memory.store).__name__,
            "embedder": {"name": info.name, "dim": info.dim},
            "memories": {s: census["states"].get(s, 0) for s in ("current", "superseded", "expired")},
            **{f"{f.removesuffix('_id')}s": len(c) for f, c in census["entities"].items()},
        }

    result = run(go, namespace, project)
    flat = [{"what": k, "value": v} for k, v in result.items()]
    show(result, as_json, lambda: table("Engram store", flat, ["what", "value"]))


def mount(app: typer.Typer) -> None:
    for fn in (get, update, delete, history, sources, users, stats):
        app.command(fn.__name__)(fn)
    app.command("delete-all")(delete_all)
