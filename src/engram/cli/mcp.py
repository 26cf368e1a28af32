"""``engram mcp`` (the stdio MCP server) and ``engram mcp config <client>``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engram.errors import EngramError

mcp_app = typer.Typer(
    help="Engram as an MCP server for Claude Code, Cursor, Claude Desktop, VS Code and any MCP client.",
    invoke_without_command=True,
)


@mcp_app.callback()
def mcp_command(
    ctx: typer.Context,
    user: Annotated[
        str | None,
        typer.Option("--user", "-u", help="default user_id (default: $ENGRAM_USER_ID, else the OS user)"),
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="default agent_id")] = None,
    app: Annotated[str | None, typer.Option("--app", help="default app_id")] = None,
    run: Annotated[str | None, typer.Option("--run", help="default run_id")] = None,
    allow_any_user: Annotated[
        bool, typer.Option("--allow-any-user", help="let a tool argument name another user than the default")
    ] = False,
    tool_names: Annotated[
        str, typer.Option("--tool-names", help="mem0 (add_memory, search_memories...) or openmemory")
    ] = "mem0",
    config: Annotated[
        Path | None,
        typer.Option("--config", help="a JSON file with an engram MemoryConfig (llm, embedder...)"),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="stderr log level")] = "WARNING",
) -> None:
    """Serve Engram over stdio (nothing but protocol on stdout; logs on stderr)."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from engram.mcp import require_sdk

    require_sdk()
    from engram.mcp.backend import Caller
    from engram.mcp.stdio import configure_logging, default_user, load_config, serve_stdio

    if tool_names not in ("mem0", "openmemory"):
        raise typer.BadParameter("--tool-names must be mem0 or openmemory")
    configure_logging(log_level.upper())
    ids = {"user_id": default_user(user), "agent_id": agent, "app_id": app, "run_id": run}
    caller = Caller({k: v for k, v in ids.items() if v}, allow_any_user=allow_any_user)
    from engram.memory import AsyncMemory

    try:
        memory = AsyncMemory(load_config(config))  # no I/O yet: the store opens on the first tool call
    except EngramError as e:  # on stderr: stdout is the protocol's
        raise typer.BadParameter(e.message, param_hint="--config") from e
    asyncio.run(serve_stdio(caller, memory, tool_names=tool_names))  # type: ignore[arg-type]


@mcp_app.command("config")
def config_command(
    client: Annotated[str, typer.Argument(help="claude-code, cursor, claude-desktop or vscode")],
    http: Annotated[
        str | None,
        typer.Option("--http", help="URL of engram serve's MCP endpoint, e.g. http://host:8000/mcp"),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="API key for --http (engram keys create)")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="pass --user to engram mcp")] = None,
    write: Annotated[bool, typer.Option("--write", help="merge it into the client's config file")] = False,
) -> None:
    """Print (or --write) the configuration that adds Engram to an MCP client."""
    from engram.mcp.clients import render, target
    from engram.mcp.clients import write as write_config

    args = ["--user", user] if user and http is None else []
    tgt = target(client, args, http, key)
    if not write:
        typer.echo(render(client, tgt, http, key))
        return
    backup = write_config(tgt)
    typer.echo(f"Added the 'engram' MCP server to {tgt.path}" + (f" (backup: {backup})" if backup else ""))
