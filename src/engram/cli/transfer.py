"""``engram export | import | backup``: move memories in and out, from mem0 too, and copy the store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from engram.cli.output import (
    EXIT_CONFLICT,
    EXIT_USAGE,
    JsonOpt,
    NamespaceOpt,
    ProjectOpt,
    emit_json,
    err,
    fail,
    json_option,
    opt,
    out,
    progress_bar,
    run,
)
from engram.memory import AsyncMemory
from engram.transfer.importer import ImportReport

MEM0 = "mem0 open source"
PLATFORM = "mem0 Platform"


def export(
    filters: Annotated[
        str | None,
        opt("Only these memories (a JSON filter, as in search).", metavar="JSON"),
    ] = None,
    output: Annotated[
        Path | None,
        opt("Write to this file (default: stdout).", None, "--output", "-o"),
    ] = None,
    with_vectors: Annotated[bool, typer.Option("--with-vectors", help="Include the vectors.")] = False,
    namespace: NamespaceOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Write memories, with history and sources, as JSON Lines (see docs/cli.md)."""
    from engram.transfer import export_to

    parsed = json_option(filters, "--filters")
    handle = output.open("w", encoding="utf-8") if output else sys.stdout
    try:
        with progress_bar("exporting", quiet=output is None) as progress:
            count = run(
                lambda m: export_to(
                    m, handle.write, filters=parsed, with_vectors=with_vectors, progress=progress
                ),
                namespace,
                project,
            )
    finally:
        if output:
            handle.close()
    if output:
        err.print(f"exported {count} memories to {output}")


def _finish(report: ImportReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
    else:
        out.print(
            f"imported {report.imported}, skipped {report.skipped} (already there), "
            f"{len(report.conflicts)} conflicts"
        )
        for conflict in report.conflicts:
            out.print(f"  conflict {conflict['id']}: {conflict['reason']}")
    if report.conflicts:
        raise typer.Exit(EXIT_CONFLICT)


def _mem0_source(
    config: Path | None, qdrant_path: Path | None, history_db: Path | None, collection: str
) -> Any:
    from engram.transfer.mem0_oss import Mem0Source, load_config

    if config is not None:
        if qdrant_path is not None:
            raise fail("give --config or --qdrant-path, not both", EXIT_USAGE)
        source = load_config(config)
        return source.model_copy(update={"history_db_path": history_db}) if history_db else source
    if qdrant_path is None:
        raise fail("`engram import mem0` needs --config FILE or --qdrant-path DIR", EXIT_USAGE)
    settings = {"path": str(qdrant_path), "collection_name": collection}
    return Mem0Source(provider="qdrant", config=settings, history_db_path=history_db)


async def _import_mem0(memory: AsyncMemory, source: Any, progress: Any) -> ImportReport:
    from engram.transfer import import_memories
    from engram.transfer.mem0_oss import read_mem0

    return await import_memories(memory, read_mem0(source), progress=progress)


async def _import_platform(
    memory: AsyncMemory, api_key: str, host: str, checkpoint: Path, progress: Any
) -> ImportReport:
    from engram.transfer.mem0_platform import Checkpoint, PlatformReader, import_platform

    reader = PlatformReader(api_key, host)
    try:
        return await import_platform(memory, reader, Checkpoint.load(checkpoint, host), progress)
    finally:
        await reader.aclose()


def import_command(
    source: Annotated[
        str,
        typer.Argument(
            help="An `engram export` file, or `mem0`, or `mem0-platform`.",
            show_default=False,
            metavar="FILE|mem0|mem0-platform",
        ),
    ],
    config: Annotated[
        Path | None,
        opt("mem0's config (JSON, as given to Memory.from_config).", MEM0),
    ] = None,
    qdrant_path: Annotated[
        Path | None,
        opt("mem0's local Qdrant directory.", MEM0),
    ] = None,
    history_db: Annotated[
        Path | None,
        opt("mem0's history database (default ~/.mem0/history.db).", MEM0),
    ] = None,
    collection: Annotated[str, typer.Option(help="mem0's collection name.", rich_help_panel=MEM0)] = "mem0",
    api_key: Annotated[
        str | None,
        opt("Platform API key (or MEM0_API_KEY).", PLATFORM, envvar="MEM0_API_KEY"),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Platform URL (any server speaking its API).", rich_help_panel=PLATFORM)
    ] = "https://api.mem0.ai",
    checkpoint: Annotated[
        Path,
        typer.Option(
            help="Where progress is kept to resume an interrupted import.", rich_help_panel=PLATFORM
        ),
    ] = Path("mem0-platform-import.json"),
    as_json: JsonOpt = False,
    namespace: NamespaceOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Import memories keeping their ids; running it again skips what is there (exit 4 on conflicts)."""
    if source == "mem0":
        default_history = Path.home() / ".mem0" / "history.db"
        history = history_db or (default_history if default_history.exists() and config is None else None)
        mem0 = _mem0_source(config, qdrant_path, history, collection)
        with progress_bar("importing from mem0", quiet=as_json) as progress:
            report = run(lambda m: _import_mem0(m, mem0, progress), namespace, project)
    elif source == "mem0-platform":
        if not api_key:
            raise fail("`engram import mem0-platform` needs --api-key (or MEM0_API_KEY)", EXIT_USAGE)
        with progress_bar("importing from the Platform", quiet=as_json) as progress:
            report = run(
                lambda m: _import_platform(m, api_key, host, checkpoint, progress), namespace, project
            )
    else:
        from engram.transfer import import_file

        with progress_bar("importing", quiet=as_json) as progress:
            report = run(lambda m: import_file(m, Path(source), progress=progress), namespace, project)
    _finish(report, as_json)


def backup(
    target: Annotated[Path, typer.Argument(help="The copy to write (must not exist).", show_default=False)],
    source: Annotated[
        Path | None,
        opt("Another SQLite file to copy, e.g. the server's server.db."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A consistent copy of the embedded store, safe while it is in use (PostgreSQL: see docs/deploy.md)."""
    from engram.transfer.backup import backup_sqlite, store_file

    result = backup_sqlite(source or store_file(), target)
    if as_json:
        emit_json(result)
        return
    size = f"{result['bytes']} bytes, {result['memories']} memories"
    out.print(f"backed up {result['source']} to {result['target']} ({size})")


def mount(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import")(import_command)
    app.command("backup")(backup)
