"""What every command shares: exit codes, JSON and table output, progress bars, building the engine."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from engram.errors import ConfigError, ConflictError, EngramError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from engram.memory import AsyncMemory

T = TypeVar("T")

# Exit codes (docs/cli.md): 0 done; 1 failed; 2 usage error (bad option, invalid input or config);
# 3 not found; 4 done, but some items conflicted (reported, never overwritten).
EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 1, 2, 3, 4

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", help="Engine namespace (default: 'default').", show_default=False)
]
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        help="A server project (its id, or ORG/PROJECT); uses the server's store.",
        show_default=False,
    ),
]
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="user_id", show_default=False)]
AgentOpt = Annotated[str | None, typer.Option("--agent", help="agent_id", show_default=False)]
AppOpt = Annotated[str | None, typer.Option("--app", help="app_id", show_default=False)]
RunOpt = Annotated[str | None, typer.Option("--run", help="run_id", show_default=False)]


def exit_code(error: EngramError) -> int:
    """The exit code that tells scripts what kind of error happened."""
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, ConflictError):
        return EXIT_CONFLICT
    if isinstance(error, ValidationError | ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


def fail(message: str, code: int) -> typer.Exit:
    """Print an error to stderr; raise the returned Exit."""
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    return typer.Exit(code)


def emit_json(data: Any) -> None:
    """Plain JSON on stdout (no colours, whatever the terminal), for scripts and ``jq``."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def show(result: Any, as_json: bool, render: Callable[[], Any]) -> None:
    """``result`` as JSON, or what ``render()`` makes of it for people."""
    if as_json:
        emit_json(result)
    else:
        out.print(render())


def opt(help: str, panel: str | None = None, *names: str, **kw: Any) -> Any:
    """A ``typer.Option`` without a shown default (most of ours default to "not given")."""
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False, **kw)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    grid = Table(title=title, show_lines=False)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(cell(row.get(c)) for c in columns))
    return grid


def json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"{name} is not valid JSON: {e}") from e


@contextmanager
def progress_bar(label: str, quiet: bool = False) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on stderr when it is a terminal; silent when piped (or ``quiet``)."""
    if quiet or not err.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _resolve_project(project: str) -> str:
    from engram.cli.keys import with_state

    async def find(state: Any) -> list[str]:
        return [p.id for o, p in await state.list_projects() if project in (p.id, f"{o.name}/{p.name}")]

    found = with_state(find)
    if len(found) != 1:
        raise ValidationError(
            f"--project {project!r} matches {len(found)} projects; give its id (see `engram keys projects`)",
            field="project",
        )
    return found[0]


def engine(namespace: str | None = None, project: str | None = None) -> AsyncMemory:
    """The engine the command works on: the default one, a namespace of it, or a server project's."""
    from engram.memory import AsyncMemory

    if namespace and project:
        raise ValidationError("give --namespace or --project, not both", field="project")
    if project:
        from engram.server.app import build_engine
        from engram.server.jobs import namespace_for
        from engram.server.settings import ServerSettings

        project_id = _resolve_project(project)
        return build_engine(ServerSettings.from_env()).namespace_view(namespace_for(project_id))
    root = AsyncMemory()
    return root.namespace_view(namespace) if namespace else root


def run(
    work: Callable[[AsyncMemory], Awaitable[T]], namespace: str | None = None, project: str | None = None
) -> T:
    """Run ``work`` on the engine and close it."""
    memory = engine(namespace, project)

    async def go() -> T:
        try:
            return await work(memory)
        finally:
            await memory.close()

    return asyncio.run(go())
