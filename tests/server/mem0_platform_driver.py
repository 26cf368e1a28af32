"""Call every public method of mem0's MemoryClient (2.x) and its ``project`` against an Engram server.

Usage: python mem0_platform_driver.py HOST API_KEY USER_ID. Records the HTTP status of every request
each method made and prints one JSON object: {"methods": {name: [statuses]}, "uncalled": [...], ...}.
The project is deleted at the end, so run it with a key of a project of its own.
"""

import json
import sys
import time

from mem0 import MemoryClient
from mem0.client.project import Project

host, key, user = sys.argv[1], sys.argv[2], sys.argv[3]
client = MemoryClient(api_key=key, host=host)
requests = []
client.client.event_hooks["response"].append(lambda r: requests.append(r.status_code))
methods = {"__init__ (ping)": [200]}
out = {}


def call(owner, method, /, *args, **kwargs):
    before = len(requests)
    label = f"project.{method}" if owner is client.project else method
    try:
        return getattr(owner, method)(*args, **kwargs)
    finally:
        methods[label] = requests[before:]


def poll_job(status_url):
    deadline = time.time() + 30
    while True:
        job = call(client, "get_profile_job", status_url)["job"]
        if job["status"] in ("succeeded", "failed") or time.time() > deadline:
            return job
        time.sleep(0.1)


conversation = [
    {"role": "user", "content": "I'm not a big fan of thriller movies, but I love sci-fi movies."},
    {"role": "user", "content": "I'm vegetarian. My daughter Maya starts ballet in September."},
]
added = call(client, "add", conversation, user_id=user, async_mode=False)
memory_id = next(r["id"] for r in added["results"] if "vegetarian" in r["memory"])
out["added"] = sorted(r["memory"] for r in added["results"])
out["listed"] = call(client, "get_all", filters={"user_id": user})["count"]
out["search"] = [r["memory"] for r in call(client, "search", "movies", filters={"user_id": user})["results"]]
out["get"] = call(client, "get", memory_id)["id"] == memory_id
call(client, "update", memory_id, text=f"{user} is vegetarian and avoids eggs")
out["history"] = [h["event"] for h in call(client, "history", memory_id)]
out["users"] = [u["name"] for u in call(client, "users")["results"]]
temp = client.add("Temporary note", user_id=user, infer=False, async_mode=False)["results"][0]["id"]
call(client, "batch_update", [{"memory_id": temp, "text": "Temporary note, revised"}])
call(client, "batch_delete", [{"memory_id": temp}])
export = call(client, "create_memory_export", schema='{"type": "object"}', user_id=user)
out["export"] = len(call(client, "get_memory_export", memory_export_id=export["id"])["memories"])

summary = call(client, "get_summary", filters={"user_id": user})
out["summary"] = {"ids": sorted(summary["memory_ids"]), "text": summary["summary"]}
settings = call(client, "update_profile_settings", enabled=True, custom_instructions="Keep it short.")
out["settings"] = settings["entities"]["user"]["custom_instructions"]
out["settings_get"] = call(client, "get_profile_settings")["enabled"]
job = call(client, "generate_profile", user, idempotency_key=f"gen-{user}")
out["generate"] = {k: job[k] for k in ("status", "operation", "entity_type", "replayed")}
out["generate_replayed"] = client.generate_profile(user, idempotency_key=f"gen-{user}")["replayed"]
out["job"] = poll_job(job["status_url"])["status"]
profile = call(client, "get_profile", user)
out["profile"] = {"status": profile["status"], "preferences": profile["profile"].get("preferences")}
sample = call(client, "sample_profiles", limit=2)
out["sample"] = {"entity_ids": sample["entity_ids"], "job": poll_job(sample["job_id"])["status"]}

hooks_before = call(client, "get_webhooks", project_id=client.project_id)
hook = call(client, "create_webhook", url="http://127.0.0.1:9/h", name="p", project_id=client.project_id,
            event_types=["memory_add"])  # fmt: skip
call(client, "update_webhook", hook["webhook_id"], name="renamed")
call(client, "delete_webhook", hook["webhook_id"])
out["webhooks_before"] = len(hooks_before)
out["feedback"] = call(client, "feedback", memory_id, feedback="POSITIVE")["feedback"]
call(client, "update_project", custom_instructions="Remember durable facts.")
out["project_get"] = call(client, "get_project", fields=["custom_instructions"])
call(client.project, "update", custom_instructions="Durable facts only.")
out["project"] = call(client.project, "get", fields=["custom_instructions"])
call(client.project, "add_member", "ana@example.com", role="READER")
call(client.project, "update_member", "ana@example.com", role="OWNER")
out["members"] = call(client.project, "get_members")["members"]
call(client.project, "remove_member", "ana@example.com")
out["created_project"] = call(client.project, "create", f"second-{user}", description="made by the driver")[
    "name"
]

stats = client.client.get("/v1/stats/").json()  # no client method: plain HTTP
out["stats"] = {k: stats[k] for k in ("total_memories", "total_users", "total_events")}
out["events"] = client.client.get("/v1/memories/events/").json()["count"]
call(client, "delete", memory_id)
out["after_delete"] = client.get_all(filters={"user_id": user})["count"]
call(client, "delete_all", user_id=user)
client.add("Other person's note", user_id=f"{user}-2", infer=False, async_mode=False)
call(client, "delete_users", user_id=f"{user}-2")
client.add("A third person's note", user_id=f"{user}-3", infer=False, async_mode=False)
out["reset"] = call(client, "reset")["message"]
out["after_reset"] = [u["name"] for u in client.users()["results"]]
try:
    client.chat()
except NotImplementedError:
    methods["chat"] = []  # mem0's client raises before any request
out["project_delete"] = call(client.project, "delete")["message"]

public = {n for n in dir(MemoryClient) if not n.startswith("_") and callable(getattr(MemoryClient, n))}
project_public = {
    f"project.{n}" for n in dir(Project) if not n.startswith("_") and callable(getattr(Project, n))
}
out["uncalled"] = sorted((public | project_public) - set(methods))
out["methods"] = methods
print(json.dumps(out))
