"""The ``engram`` command line: a thin layer over the public :class:`engram.Memory` API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from engram.cli.output import emit_json, err, exit_code, json_option, table
from engram.cli.output import out as console
from engram.errors import EngramError

app = typer.Typer(
    help="Engram: long-term memory for AI agents.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)

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


@app.command()
def add(
    text: Annotated[str, typer.Argument(help="What to remember (one user message).")],
    user: Annotated[str, typer.Option("--user", "-u", help="user_id")],
    metadata: Annotated[str | None, typer.Option(metavar="JSON", help="metadata as a JSON object")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="store the text as given (infer=False)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON result")] = False,
) -> None:
    """Add a memory for a user."""
    with _memory() as memory:
        result = memory.add(text, user_id=user, metadata=json_option(metadata, "--metadata"), infer=not raw)
    if as_json:
        emit_json(result)
        return
    console.print(table("Added", result["results"], ["event", "memory", "id"]))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    user: Annotated[str, typer.Option("--user", "-u", help="user_id")],
    filters: Annotated[str | None, typer.Option(metavar="JSON", help="filters as a JSON object")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON result")] = False,
) -> None:
    """Search a user's memories."""
    with _memory() as memory:
        result = memory.search(query, user_id=user, filters=json_option(filters, "--filters"), top_k=top_k)
    if as_json:
        emit_json(result)
        return
    console.print(table(f"Results for {query!r}", result["results"], ["score", "memory", "id"]))


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
        emit_json(result)
        return
    console.print(
        table(f"{result['total']} memories of {user}", result["results"], ["memory", "created_at", "id"])
    )


@app.command()
def quickstart(
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON results")] = False,
) -> None:
    """Run the seed example end to end on the embedded default (no keys, no network)."""
    from engram.config import default_home

    if not as_json:
        console.print(f"[bold]Engram quickstart[/bold] — store: {default_home() / 'engram.db'}")
        console.print("A short conversation with alice:")
        for message in SEED_CONVERSATION:
            console.print(f"  [cyan]{message.get('name') or message['role']}[/cyan]: {message['content']}")
    query = "What kind of movies does alice like?"
    with _memory() as memory:
        added = memory.add(SEED_CONVERSATION, user_id="alice", app_id="engram-quickstart")
        found = memory.search(query, user_id="alice", app_id="engram-quickstart", top_k=5)
        profile = memory.refresh_profile("alice")["profile"]
    if as_json:
        emit_json({"added": added, "search": found, "profile": profile})
    else:
        extractor = added.get("extractor", "none")
        console.print(table(f"Stored (extractor: {extractor})", added["results"], ["event", "memory"]))
        console.print(table(f"Search: {query}", found["results"], ["score", "memory"]))
        rows = [{"section": name, "memory": text} for name, items in profile.items() for text in items]
        console.print(table("Profile of alice", rows, ["section", "memory"]))
    if not found["results"]:
        err.print("[red]The search found nothing.[/red]")
        raise typer.Exit(1)


def _mount_server_commands() -> None:
    """`engram serve`, `worker`, `ui`, `keys`, `mcp` and the data commands (imported when they run)."""
    from engram.cli import doctor, memories, reembed, transfer
    from engram.cli.keys import keys_app
    from engram.cli.mcp import mcp_app
    from engram.cli.serve import serve_command, worker_command
    from engram.cli.ui import ui_command

    memories.mount(app)
    transfer.mount(app)
    app.command("doctor")(doctor.doctor)
    app.command("reembed")(reembed.reembed_command)
    app.command("serve")(serve_command)
    app.command("worker")(worker_command)
    app.command("ui")(ui_command)
    app.add_typer(keys_app, name="keys")
    app.add_typer(mcp_app, name="mcp")


def _plain_option_types() -> None:
    """Typer prints a type after every parameter, flags included (``--json <bool>``): flags get none,
    the others click's plain upper-case names (``TEXT``, ``INT``, ``PATH``)."""
    from typer.core import TyperArgument, TyperOption

    for cls in (TyperOption, TyperArgument):
        shown = cls.display_type_rich
        if getattr(shown, "engram_plain", False):
            continue

        def display_type_rich(self: Any, ctx: Any, shown: Any = shown) -> str | None:
            if getattr(self, "is_flag", False):
                return None
            label = shown(self, ctx) or ""
            return {"<str>": "TEXT"}.get(label, label.strip("<>").upper()) or None

        display_type_rich.engram_plain = True  # type: ignore[attr-defined]
        cls.display_type_rich = display_type_rich  # type: ignore[method-assign]


_mounted: list[bool] = []


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``engram`` script (``argv``: the arguments, default ``sys.argv[1:]``)."""
    _plain_option_types()
    if not _mounted:
        _mount_server_commands()
        _mounted.append(True)
    try:
        app(args=argv)
    except EngramError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise SystemExit(exit_code(e)) from e
