"""Helpers for the server tests: run the real server in a subprocess, install mem0's real clients."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent
MEM0_PY_VERSIONS = {"v2": "2.2.1", "v1": "1.0.11"}
MEM0_NPM_VERSION = "3.3.1"


def cache_dir() -> Path:
    root = os.environ.get("ENGRAM_TEST_CACHE") or str(Path.home() / ".cache" / "engram-tests")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time (pytest-xdist or two test runs)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], **kw: Any) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )


def mem0_python(version: str) -> Path:
    """The python of a venv (in the test cache) with ``mem0ai==version`` installed from PyPI."""
    target = cache_dir() / f"mem0-{version}"
    python = target / "bin" / "python"
    marker = target / ".installed"
    with _locked(cache_dir() / f".mem0-{version}.lock"):
        if not marker.exists():
            if target.exists():
                import shutil

                shutil.rmtree(target)
            venv.EnvBuilder(with_pip=True, clear=True).create(target)
            _run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    f"mem0ai=={version}",
                ],
                timeout=900,
            )
            marker.write_text(version)
    return python


def npm_package(package: str, version: str, name: str) -> Path:
    """A node project dir (in the test cache, ``name``) with ``package@version`` installed from npm."""
    target = cache_dir() / f"npm-{name}-{version}"
    marker = target / ".installed"
    with _locked(cache_dir() / f".npm-{name}.lock"):
        if not marker.exists():
            target.mkdir(parents=True, exist_ok=True)
            (target / "package.json").write_text(f'{{"name": "engram-{name}-driver", "private": true}}\n')
            _run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--legacy-peer-deps",
                    "--loglevel=error",
                    f"{package}@{version}",
                ],
                cwd=target,
                timeout=900,
            )
            marker.write_text(version)
    return target


def mem0_npm() -> Path:
    """A node project dir (in the test cache) with the npm ``mem0ai`` client installed."""
    return npm_package("mem0ai", MEM0_NPM_VERSION, "mem0ai")


def client_env(tmp: Path) -> dict[str, str]:
    """Environment for mem0 client processes: no telemetry, no writes outside ``tmp``."""
    env = dict(os.environ)
    env.update({"MEM0_TELEMETRY": "false", "MEM0_DIR": str(tmp / "mem0dir"), "HOME": str(tmp)})
    for var in ("OPENAI_API_KEY", "MEM0_API_KEY", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(var, None)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


class ServerProcess:
    """``python -m engram.server`` on a free loopback port with its own ENGRAM_HOME."""

    def __init__(self, home: Path, **settings: Any) -> None:
        self.home = home
        self.port = free_port()
        self.settings = {
            "memory_config": {"embedder": {"provider": "fake"}, "llm_from_env": False},
            "poll_interval": 0.05,
            "lease_seconds": 2.0,
            "rate_limit_per_minute": 0,
            **settings,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_path(self) -> Path:
        return self.home / "server.db"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ENGRAM_HOME"] = str(self.home)
        for name, value in self.settings.items():
            env[f"ENGRAM_SERVER_{name.upper()}"] = (
                json.dumps(value) if isinstance(value, dict) else str(value)
            )
        return env

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engram.server", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/v1/ping/", timeout=1).status_code == 401:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def make_key(
    state_path: Path, org: str, project: str, *, read_only: bool = False, rate_limit: int | None = None
) -> tuple[str, str, str]:
    """Create (org, project, key) straight in the server's state database: (key, org_id, project_id)."""
    from engram.stores.sqlite.service import SQLiteServiceState

    async def go() -> tuple[str, str, str]:
        state = SQLiteServiceState(path=state_path)
        await state.open()
        try:
            o = await state.ensure_org(org)
            p = await state.ensure_project(o.id, project)
            if rate_limit is not None:
                await state.set_rate_limit(p.id, rate_limit)
            return await state.create_key(p.id, read_only=read_only), o.id, p.id
        finally:
            await state.close()

    return asyncio.run(go())


def start_on_state(home: Path, backend: str, pg_url: str | None = None, **settings: Any) -> ServerProcess:
    """A server whose state is SQLite (``server.db`` in ``home``) or PostgreSQL (a fresh schema)."""
    if backend == "postgres":
        assert pg_url is not None
        schema = f"t_{os.urandom(6).hex()}"
        settings = {
            **settings,
            "state_backend": "postgres",
            "state_config": {"url": pg_url, "schema_name": schema},
        }
    return ServerProcess(home, **settings).start(timeout=60)


def make_key_on(srv: ServerProcess, org: str, project: str) -> tuple[str, str, str]:
    """(key, org_id, project_id) in the server's own state, whichever backend it uses."""
    if srv.settings.get("state_backend") != "postgres":
        return make_key(srv.state_path, org, project)
    from engram.stores.postgres.service import PostgresServiceState

    async def go() -> tuple[str, str, str]:
        state = PostgresServiceState(**srv.settings["state_config"])
        await state.open()
        try:
            o = await state.ensure_org(org)
            p = await state.ensure_project(o.id, project)
            return await state.create_key(p.id), o.id, p.id
        finally:
            await state.close()

    return asyncio.run(go())


def drop_state_schema(srv: ServerProcess, pg_url: str | None) -> None:
    """Drop a PostgreSQL server's state schema (nothing for SQLite state)."""
    if srv.settings.get("state_backend") == "postgres" and pg_url:
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{srv.settings["state_config"]["schema_name"]}" CASCADE')


def stored_counts(srv: ServerProcess, key: str) -> tuple[int, int, int]:
    """(memories, messages, add events) as stored: what a refused request must leave unchanged."""
    import sqlite3

    db = srv.home / "engram.db"
    memories = messages = 0
    if db.exists():
        with contextlib.closing(sqlite3.connect(db)) as conn:
            memories = conn.execute("SELECT count(*) FROM memories WHERE deleted_at IS NULL").fetchone()[0]
            messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    events = httpx.get(
        srv.url + "/v1/events/",
        params={"page_size": 1},
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    ).json()["count"]
    return memories, messages, int(events)
