"""``engram doctor``: check the store, its migrations, the embedder, the LLM and the server settings."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from engram.cli.output import EXIT_FAILED, JsonOpt, NamespaceOpt, emit_json, engine, out, table
from engram.errors import EngramError
from engram.memory import AsyncMemory


@dataclass
class Check:
    check: str
    status: str  # "ok", "warn" or "fail"
    detail: str
    fix: str = ""


async def _store(memory: AsyncMemory) -> list[Check]:
    store = memory.store
    try:
        await memory.open()
    except EngramError as e:
        fix = "configure the embedder that filled the store, or use a new ENGRAM_HOME / schema"
        if "embedder" not in e.message:
            fix = "check ENGRAM_HOME / ENGRAM_DATABASE_URL and that the database is reachable"
        return [Check("store", "fail", e.message, fix)]
    where = getattr(store, "path", None) or getattr(getattr(store, "settings", None), "schema_name", "")
    checks = [Check("store", "ok", f"{type(store).__name__} at {where}")]
    checks.append(_migrations(store))
    return checks


def _migrations(store: Any) -> Check:
    from engram.stores.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        import sqlite3

        from engram.stores.sqlite.schema import MIGRATIONS

        with sqlite3.connect(store.path) as conn:
            applied = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        latest = max(v for v, _, _ in MIGRATIONS)
    else:
        from engram.stores.postgres.schema import MIGRATIONS as PG_MIGRATIONS

        applied = latest = max(v for v, _, _ in PG_MIGRATIONS)  # migrate() ran under its lock at open
    if applied != latest:
        return Check(
            "migrations",
            "fail",
            f"schema version {applied}, expected {latest}",
            "upgrade Engram in every process that uses this store",
        )
    return Check("migrations", "ok", f"schema version {applied} (latest)")


async def _embedder(memory: AsyncMemory) -> Check:
    info = memory.embedder.info
    started = time.perf_counter()
    try:
        vectors = await memory.embedder.embed(["engram doctor"])
    except EngramError as e:
        return Check(
            "embedder", "fail", f"{info.name}: {e.message}", "check the embedder settings and its API key"
        )
    ms = (time.perf_counter() - started) * 1000
    return Check("embedder", "ok", f"{info.name}, {vectors.shape[1]} dimensions, {ms:.0f} ms for one text")


async def _llm(memory: AsyncMemory) -> Check:
    from engram.llms import llm_from_environment

    llm = memory.llm or (llm_from_environment() if memory.config.llm_from_env else None)
    if llm is None:
        return Check(
            "llm",
            "warn",
            "no LLM: add(infer=True) uses the offline extractor",
            "for LLM extraction set OPENAI_API_KEY / ANTHROPIC_API_KEY or configure 'llm'",
        )
    try:
        reply = await llm.complete([{"role": "user", "content": "Reply with the single word OK."}])
    except EngramError as e:
        return Check("llm", "fail", f"{llm.name}: {e.message}", "check the model name, API key and base URL")
    finally:
        if llm is not memory.llm:
            await llm.aclose()
    return Check("llm", "ok", f"{llm.name} answered {reply.strip()[:20]!r}")


def _server() -> list[Check]:
    from engram.server.settings import ServerSettings

    try:
        settings = ServerSettings.from_env()
    except (EngramError, ValueError) as e:
        return [Check("server settings", "fail", str(e), "fix the ENGRAM_SERVER_* variables")]
    checks = [
        Check(
            "server settings",
            "ok",
            f"{settings.host}:{settings.port}, {settings.workers} worker(s), state: {settings.state_backend}",
        )
    ]
    if settings.state_backend == "sqlite" and not settings.resolved_state_path().exists():
        checks.append(
            Check(
                "server keys",
                "warn",
                "no server state yet",
                "create a key: engram keys create --org ORG --project PROJECT",
            )
        )
        return checks
    from engram.cli.keys import with_state

    try:
        keys = with_state(lambda state: state.list_keys())
    except EngramError as e:
        return [*checks, Check("server keys", "fail", e.message, "check the server state settings")]
    active = [k for k in keys if not k.revoked_at]
    status = "ok" if active else "warn"
    checks.append(
        Check(
            "server keys",
            status,
            f"{len(active)} active key(s)",
            "" if active else "create one: engram keys create --org ORG --project PROJECT",
        )
    )
    return checks


def doctor(as_json: JsonOpt = False, namespace: NamespaceOpt = None) -> None:
    """Check the store, migrations, embedder, LLM (one tiny call) and server settings; say what to fix."""
    import asyncio

    async def go() -> list[Check]:
        memory = engine(namespace)
        try:
            checks = await _store(memory)
            if checks[0].status == "ok":
                checks += [await _embedder(memory), await _llm(memory)]
            return checks
        finally:
            await memory.close()

    checks = asyncio.run(go()) + _server()
    if as_json:
        emit_json({"ok": all(c.status != "fail" for c in checks), "checks": [asdict(c) for c in checks]})
    else:
        out.print(table("engram doctor", [asdict(c) for c in checks], ["check", "status", "detail", "fix"]))
    if any(c.status == "fail" for c in checks):
        raise SystemExit(EXIT_FAILED)
