"""``engram keys``: create, list and revoke the server's API keys (organizations and projects too)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from engram.cli.output import EXIT_NOT_FOUND, JsonOpt, emit_json

if TYPE_CHECKING:
    from engram.service import ServiceState

keys_app = typer.Typer(help="Manage the server's API keys, organizations and projects.", no_args_is_help=True)
T = TypeVar("T")


def with_state(fn: Callable[[ServiceState], Awaitable[T]]) -> T:
    from engram.server.app import build_state
    from engram.server.settings import ServerSettings

    async def go() -> T:
        state = build_state(ServerSettings.from_env())
        await state.open()
        try:
            return await fn(state)
        finally:
            await state.close()

    return asyncio.run(go())


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else ""


@keys_app.command("create")
def create(
    org: Annotated[str, typer.Option("--org", help="organization name (created if missing)")],
    project: Annotated[str, typer.Option("--project", help="project name (created if missing)")],
    name: Annotated[str | None, typer.Option(help="a label for the key")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="the key cannot write")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print it. It is shown only this once."""

    async def go(state: ServiceState) -> tuple[str, str, str]:
        o = await state.ensure_org(org)
        p = await state.ensure_project(o.id, project)
        return await state.create_key(p.id, name=name, read_only=read_only), o.id, p.id

    key, org_id, project_id = with_state(go)
    if as_json:
        emit_json({"key": key, "org_id": org_id, "project_id": project_id})
        return
    typer.echo(key)
    typer.echo(
        f"# org {org} ({org_id}), project {project} ({project_id}). Store it now: it is not shown again.",
        err=True,
    )


@keys_app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """List keys (never the keys themselves: their prefix, project and state)."""

    async def go(state: ServiceState) -> list[dict[str, Any]]:
        names = {p.id: f"{o.name}/{p.name}" for o, p in await state.list_projects()}
        return [
            {
                "id": k.id,
                "prefix": k.prefix + "…",
                "project": names.get(k.project_id, k.project_id),
                "name": k.name or "",
                "access": "read-only" if k.read_only else "read-write",
                "created": _when(k.created_at),
                "state": f"revoked {_when(k.revoked_at)}" if k.revoked_at else "active",
            }
            for k in await state.list_keys()
        ]

    rows = with_state(go)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no keys; create one with: engram keys create --org ORG --project PROJECT")
    for row in rows:
        typer.echo("  ".join(row.values()))


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (or its prefix) from `engram keys list`")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key: it stops working within seconds."""

    async def go(state: ServiceState) -> bool:
        return await state.revoke_key(key_id)

    if not with_state(go):
        typer.echo(f"no active key {key_id!r}", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    if as_json:
        emit_json({"revoked": key_id})
        return
    typer.echo(f"revoked {key_id}")


@keys_app.command("projects")
def projects(as_json: JsonOpt = False) -> None:
    """List organizations and projects with their ids."""

    async def go(state: ServiceState) -> list[dict[str, Any]]:
        return [
            {"org": o.name, "org_id": o.id, "project": p.name, "project_id": p.id,
             "rate_limit_per_minute": p.rate_limit_per_minute}
            for o, p in await state.list_projects()
        ]  # fmt: skip

    rows = with_state(go)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        limit = r["rate_limit_per_minute"] if r["rate_limit_per_minute"] is not None else "default"
        typer.echo(f"{r['org']} ({r['org_id']})  {r['project']} ({r['project_id']})  rate limit: {limit}")


@keys_app.command("set-limit")
def set_limit(
    project_id: Annotated[str, typer.Argument(help="project id (see `engram keys projects`)")],
    per_minute: Annotated[
        int | None, typer.Argument(help="requests per minute; omit for the default")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a project's rate limit (requests per minute; 0 disables limiting)."""

    async def go(state: ServiceState) -> None:
        await state.set_rate_limit(project_id, per_minute)

    with_state(go)
    if as_json:
        emit_json({"project_id": project_id, "rate_limit_per_minute": per_minute})
        return
    typer.echo(f"{project_id}: {per_minute if per_minute is not None else 'default'} requests per minute")
