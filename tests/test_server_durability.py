"""Accepted async adds survive SIGKILL and restarts, and end SUCCEEDED exactly once."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "server"))
from srvhelpers import ServerProcess, make_key

from engram import MemoryClient

pytestmark = pytest.mark.slow


def _unfinished(state_path: Path) -> int:
    with sqlite3.connect(state_path) as conn:
        return int(
            conn.execute("SELECT count(*) FROM jobs WHERE status IN ('PENDING', 'RUNNING')").fetchone()[0]
        )


def _wait_all_done(client: MemoryClient, event_ids: list[str], timeout: float = 60) -> dict[str, dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        events = {e: client.get_event(e) for e in event_ids}
        if (
            all(ev["status"] in ("SUCCEEDED", "FAILED") for ev in events.values())
            or time.monotonic() > deadline
        ):
            return events
        time.sleep(0.2)


def test_sigkill_with_adds_in_flight_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "crash"
    server = ServerProcess(home, job_delay_ms=100, worker_tasks=1, lease_seconds=1.0).start()
    key = make_key(server.state_path, "org", "proj")[0]
    texts = [f"Durable fact number {i}" for i in range(30)]
    accepted: list[str] = []
    try:
        with MemoryClient(api_key=key, host=server.url) as client:
            for i, text in enumerate(texts):
                answer = client.add(text, user_id="crash", infer=False, idempotency_key=f"add-{i}")
                assert answer["status"] == "PENDING"
                accepted.append(answer["event_id"])
            time.sleep(0.3)  # let the worker get well into the queue
    finally:
        server.kill()
    assert _unfinished(server.state_path) > 0, "the kill must land while adds are queued or running"

    restarted = ServerProcess(home, worker_tasks=2, lease_seconds=1.0)
    restarted.port = server.port
    restarted.start()
    try:
        with MemoryClient(api_key=key, host=restarted.url) as client:
            events = _wait_all_done(client, accepted)
            assert [events[e]["status"] for e in accepted] == ["SUCCEEDED"] * len(texts)
            assert all(events[e]["completed_at"] for e in accepted)
            # a retried request with the same Idempotency-Key gets the same event, and runs nothing new
            again = client.add(texts[0], user_id="crash", infer=False, idempotency_key="add-0")
            assert again["event_id"] == accepted[0] and again["status"] == "SUCCEEDED"
            stored = client.get_all(user_id="crash", page_size=1000)
            assert stored["count"] == len(texts)
            assert sorted(m["memory"] for m in stored["results"]) == sorted(texts)
            assert client.list_events(page_size=1000)["count"] == len(texts)
    finally:
        restarted.stop()


def test_separate_worker_process_runs_the_queue(tmp_path: Path) -> None:
    home = tmp_path / "workers"
    server = ServerProcess(home, worker_tasks=0).start()
    key = make_key(server.state_path, "org", "proj")[0]
    engram = shutil.which("engram", path=str(Path(sys.executable).parent))
    assert engram
    worker = None
    try:
        with MemoryClient(api_key=key, host=server.url) as client:
            queued = client.add("Handled by engram worker", user_id="w", infer=False)
            time.sleep(0.5)
            assert client.get_event(queued["event_id"])["status"] == "PENDING"  # nobody runs it in-process
            worker = subprocess.Popen(
                [engram, "worker", "--tasks", "1"],
                env=server.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            event = client.wait_for_event(queued["event_id"], timeout=30)
            assert event["results"][0]["memory"] == "Handled by engram worker"
            hits = client.search("engram worker", user_id="w")["results"]
            assert hits and hits[0]["id"] == event["results"][0]["id"]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(15)
        server.stop()


def test_graceful_stop_hands_running_jobs_back(tmp_path: Path) -> None:
    """On SIGTERM a worker releases its job at once, so a restart need not wait for the lease."""
    home = tmp_path / "graceful"
    server = ServerProcess(home, job_delay_ms=400, worker_tasks=1, lease_seconds=60).start()
    key = make_key(server.state_path, "org", "proj")[0]
    with MemoryClient(api_key=key, host=server.url) as client:
        accepted = [client.add(f"graceful {i}", user_id="g", infer=False)["event_id"] for i in range(3)]
        time.sleep(0.2)
    server.stop()
    with sqlite3.connect(server.state_path) as conn:
        running = conn.execute("SELECT count(*) FROM jobs WHERE status = 'RUNNING'").fetchone()[0]
    assert running == 0
    restarted = ServerProcess(home, worker_tasks=1, lease_seconds=60)
    restarted.start()
    try:
        with MemoryClient(api_key=key, host=restarted.url) as client:
            events = _wait_all_done(client, accepted, timeout=20)  # far less than the 60 s lease
            assert [events[e]["status"] for e in accepted] == ["SUCCEEDED"] * 3
            assert client.get_all(user_id="g")["count"] == 3
    finally:
        restarted.stop()
