"""The ``engram`` command line: a thin layer over the public :class:`engram.Memory` API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engram.errors import EngramError

app = typer.Typer(help="Engram: long-term memory for AI agents.", no_args_is_help=True, add_completion=False)
console = Console()

SEED_CONVERSATION = [
    {
        "role": "user",
        "name": "alice",
        "content": "I'm planning to watch a movie tonight. Any recommendations?",
    },
    {"role": "assistant", "content": "How about a thriller? They can be quite engaging."},
    {
        "role": "user",
        "name": "alice",
        "content": "I'm not a big fan of thriller movies, but I love sci-fi movies.",
    },
    {"role": "assistant", "content": "Got it! I'll skip thrillers and suggest sci-fi movies from now on."},
]


def _memory() -> Any:
    from engram import Memory

    return Memory()


def _json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"{name} is not valid JSON: {e}") from e


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return value if isinstance(value, str) else json.dumps(value)


@app.command()
def add(
    text: Annotated[str, typer.Argument(help="What to remember (one user message).")],
    user: Annotated[str, typer.Option("--user", "-u", help="user_id")],
    metadata: Annotated[str | None, typer.Option(help="metadata as a JSON object")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="store the text as given (infer=False)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON result")] = False,
) -> None:
    """Add a memory for a user."""
    with _memory() as memory:
        result = memory.add(text, user_id=user, metadata=_json_option(metadata, "--metadata"), infer=not raw)
    if as_json:
        console.print_json(data=result)
        return
    console.print(_table("Added", result["results"], ["event", "memory", "id"]))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    user: Annotated[str, typer.Option("--user", "-u", help="user_id")],
    filters: Annotated[str | None, typer.Option(help="filters as a JSON object")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON result")] = False,
) -> None:
    """Search a user's memories."""
    with _memory() as memory:
        result = memory.search(query, user_id=user, filters=_json_option(filters, "--filters"), top_k=top_k)
    if as_json:
        console.print_json(data=result)
        return
    console.print(_table(f"Results for {query!r}", result["results"], ["score", "memory", "id"]))


@app.command("list")
def list_memories(
    user: Annotated[str, typer.Option("--user", "-u", help="user_id")],
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON result")] = False,
) -> None:
    """List a user's memories, most recent first."""
    with _memory() as memory:
        result = memory.get_all(user_id=user, top_k=top_k)
    if as_json:
        console.print_json(data=result)
        return
    console.print(
        _table(f"{result['total']} memories of {user}", result["results"], ["memory", "created_at", "id"])
    )


@app.command()
def quickstart() -> None:
    """Run the seed example end to end on the embedded default (no keys, no network)."""
    from engram.config import default_home

    console.print(f"[bold]Engram quickstart[/bold] — store: {default_home() / 'engram.db'}")
    console.print("A short conversation with alice:")
    for message in SEED_CONVERSATION:
        console.print(f"  [cyan]{message.get('name') or message['role']}[/cyan]: {message['content']}")
    with _memory() as memory:
        added = memory.add(SEED_CONVERSATION, user_id="alice", app_id="engram-quickstart")
        extractor = added.get("extractor", "none")
        console.print(_table(f"Stored (extractor: {extractor})", added["results"], ["event", "memory"]))
        query = "What kind of movies does alice like?"
        found = memory.search(query, user_id="alice", app_id="engram-quickstart", top_k=5)
        console.print(_table(f"Search: {query}", found["results"], ["score", "memory"]))
        profile = memory.refresh_profile("alice")["profile"]
        rows = [{"section": name, "memory": text} for name, items in profile.items() for text in items]
        console.print(_table("Profile of alice", rows, ["section", "memory"]))
    if not found["results"]:
        console.print("[red]The search found nothing.[/red]")
        raise typer.Exit(1)


def _mount_server_commands() -> None:
    """`engram serve`, `engram worker` and `engram keys` (their heavy imports happen when they run)."""
    from engram.cli.keys import keys_app
    from engram.cli.serve import serve_command, worker_command

    app.command("serve")(serve_command)
    app.command("worker")(worker_command)
    app.add_typer(keys_app, name="keys")


def main() -> None:
    """Entry point of the ``engram`` script."""
    _mount_server_commands()
    try:
        app()
    except EngramError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        raise SystemExit(2) from e
