"""Drive an Engram server with mem0's real Python MemoryClient (run with a venv that has mem0ai).

Usage: python mem0_py_driver.py HOST API_KEY USER_ID. Prints one JSON object of observations and exits
non-zero (with the traceback) when a step fails.
"""

import json
import sys
import time

from mem0 import MemoryClient

host, key, user = sys.argv[1], sys.argv[2], sys.argv[3]
import mem0.client.main as client_main  # noqa: E402

v1 = not hasattr(client_main, "ENTITY_PARAMS")  # the 2.x line rejects top-level entity ids
out = {"line": "1.x" if v1 else "2.x"}

client = MemoryClient(api_key=key, host=host)
out["org_id"], out["project_id"] = client.org_id, client.project_id

messages = [{"role": "user", "content": "I love science fiction movies"}]
added = client.add(messages, user_id=user, infer=False, metadata={"source": "driver"})
out["add_response"] = added
event_id = added["results"][0]["event_id"] if v1 else added["event_id"]
assert added.get("status") == "PENDING" or added["results"][0]["status"] == "PENDING", added

deadline = time.time() + 30
while True:
    event = client.client.get(f"/v1/event/{event_id}/").json()
    if event["status"] in ("SUCCEEDED", "FAILED") or time.time() > deadline:
        break
    time.sleep(0.1)
out["event"] = {k: event[k] for k in ("id", "status", "event_type", "results", "latency")}
assert event["status"] == "SUCCEEDED", event
memory_id = event["results"][0]["id"]

client.add("My dog is called Rex", user_id=user, infer=False, async_mode=False)

if v1:
    found = client.search("science fiction", user_id=user)
    listed = client.get_all(user_id=user)
    paged = client.get_all(user_id=user, page=1, page_size=1)
else:
    found = client.search("science fiction", filters={"user_id": user}, top_k=5)
    listed = client.get_all(filters={"user_id": user})
    paged = client.get_all(filters={"AND": [{"user_id": user}]}, page=1, page_size=1)
out["search"] = [(r["memory"], r["score"]) for r in found["results"]]
out["list_count"] = listed.get("count", len(listed["results"]))
out["paged"] = {"count": paged["count"], "n": len(paged["results"]), "next": paged["next"]}
assert found["results"][0]["id"] == memory_id, found

got = client.get(memory_id)
out["get"] = {k: got.get(k) for k in ("id", "memory", "user_id", "metadata")}
updated = client.update(memory_id, text="I love science fiction and fantasy movies")
out["update"] = updated.get("message")
out["history"] = [h["event"] for h in client.history(memory_id)]
out["users"] = [(u["type"], u["name"], u["total_memories"]) for u in client.users()["results"]]

try:
    client.get("00000000-0000-0000-0000-000000000000")
    out["missing"] = "no error"
except Exception as e:  # mem0 maps 404 to its own exception classes
    out["missing"] = type(e).__name__

second_id = client.add("Temporary memory", user_id=user, infer=False, async_mode=False)["results"][0]["id"]
out["batch_update"] = client.batch_update([{"memory_id": second_id, "text": "Temporary, revised"}])["message"]
out["batch_delete"] = client.batch_delete([{"memory_id": second_id}])["message"]
if not v1:  # 1.0.11's feedback() raises a TypeError in its own telemetry call after the request
    out["feedback"] = client.feedback(memory_id, feedback="NEGATIVE", feedback_reason="outdated")["feedback"]
export = client.create_memory_export(schema='{"type": "object"}', user_id=user)
out["export"] = len(client.get_memory_export(memory_export_id=export["id"])["memories"])
hook = client.create_webhook(
    url="http://127.0.0.1:9/hook", name="driver", project_id=client.project_id, event_types=["memory_add"]
)
out["webhooks"] = [w["name"] for w in client.get_webhooks(project_id=client.project_id)]
client.delete_webhook(hook["webhook_id"])
client.project.update(custom_instructions="Keep only durable preferences.")
out["project"] = client.project.get(fields=["custom_instructions"])
out["delete"] = client.delete(memory_id)["message"]
out["after_delete_count"] = (
    client.get_all(user_id=user) if v1 else client.get_all(filters={"user_id": user})
)["count"]
out["delete_all"] = client.delete_all(user_id=user)["message"]
out["final_count"] = (client.get_all(user_id=user) if v1 else client.get_all(filters={"user_id": user}))[
    "count"
]
print(json.dumps(out))
