"""Profile generation on the durable job queue: settings, enqueueing, running and job views.

A profile job (kind ``PROFILE``) names the users to (re)build; a worker rebuilds each one through
:meth:`AsyncMemory.refresh_profile` with the project's profile schema and instructions.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from engram.server.jobs import job_error
from engram.service import Job, ServiceState

if TYPE_CHECKING:
    from engram.memory import AsyncMemory

SETTINGS_KEY = "_profiles"  # inside the project settings (hidden from the project view)
STATUS = {"PENDING": "pending", "RUNNING": "pending", "SUCCEEDED": "succeeded", "FAILED": "failed"}


def status_url(job_id: str) -> str:
    return f"/v2/profiles/jobs/{job_id}/"


async def profile_settings(state: ServiceState, project_id: str) -> dict[str, Any]:
    """``{"enabled", "capabilities", "entities": {"user": {"schema", "custom_instructions"}}}``."""
    stored = (await state.get_project_settings(project_id)).get(SETTINGS_KEY) or {}
    user = stored.get("user") or {}
    return {
        "enabled": bool(stored.get("enabled", True)),
        "capabilities": {"generate": True, "sample": True, "schema": True, "custom_instructions": True},
        "entities": {
            "user": {"schema": user.get("schema"), "custom_instructions": user.get("custom_instructions")}
        },
    }


async def save_profile_settings(state: ServiceState, project_id: str, changes: dict[str, Any]) -> None:
    """Merge ``{"enabled"?, "entities"?: {"user": {...}}}`` into the stored settings."""
    stored = dict((await state.get_project_settings(project_id)).get(SETTINGS_KEY) or {})
    if changes.get("enabled") is not None:  # null: unchanged
        stored["enabled"] = bool(changes["enabled"])
    user_changes = (changes.get("entities") or {}).get("user") or {}
    if user_changes:
        stored["user"] = {**(stored.get("user") or {}), **user_changes}
    await state.update_project_settings(project_id, {SETTINGS_KEY: stored})


def request_digest(path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([path, body], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def run_profile_job(view: AsyncMemory, state: ServiceState, job: Job) -> list[dict[str, Any]]:
    """Rebuild every user the job names; one result per user (a failure does not stop the rest)."""
    settings = await profile_settings(state, job.project_id)
    user = settings["entities"]["user"]
    results: list[dict[str, Any]] = []
    for entity_id in job.payload.get("entity_ids", []):
        try:
            built = await view.refresh_profile(
                entity_id, schema=user["schema"], instructions=user["custom_instructions"]
            )
            results.append({"entity_id": entity_id, "status": built["status"]})
        except Exception as e:  # reported per user; the job still completes
            results.append({"entity_id": entity_id, "status": "failed", "error": job_error(e, job.id)})
    return results


def job_view(job: Job) -> dict[str, Any]:
    """A profile job as ``get_profile_job`` answers it (under ``"job"``)."""
    results = job.results or []
    done = [r for r in results if isinstance(r, dict)]
    total = len(job.payload.get("entity_ids", []))
    return {
        "id": job.id,
        "job_id": job.id,
        "status": STATUS.get(job.status, job.status.lower()),
        "operation": job.payload.get("operation", "trigger"),
        "entity_type": "user",
        "entity_ids": job.payload.get("entity_ids", []),
        "total": total,
        "enumeration_complete": True,
        "completed": len(done),
        "succeeded": sum(1 for r in done if r.get("status") == "succeeded"),
        "failed": sum(1 for r in done if r.get("status") == "failed") + (1 if job.status == "FAILED" else 0),
        "skipped": sum(1 for r in done if r.get("status") not in ("succeeded", "failed")),
        "results": done,
        "error": job.error,
        "status_url": status_url(job.id),
    }
