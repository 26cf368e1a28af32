// Drive an Engram server with the npm mem0ai MemoryClient: node mem0_npm_driver.mjs HOST KEY USER
import MemoryClient from "mem0ai";

const [host, apiKey, user] = process.argv.slice(2);
const out = {};
const client = new MemoryClient({ apiKey, host });
await client.ping();
out.ping = "ok";

const added = await client.add([{ role: "user", content: "I drink green tea every morning" }], {
  userId: user,
  infer: false,
});
out.add = added;
const eventId = added.eventId;
let event;
for (let i = 0; i < 300; i++) {
  const res = await fetch(`${host}/v1/event/${eventId}/`, { headers: { Authorization: `Token ${apiKey}` } });
  event = await res.json();
  if (event.status === "SUCCEEDED" || event.status === "FAILED") break;
  await new Promise((r) => setTimeout(r, 100));
}
out.eventStatus = event.status;
const memoryId = event.results[0].id;

const found = await client.search("green tea", { filters: { user_id: user }, topK: 3 });
out.search = found.results.map((r) => [r.memory, r.id === memoryId]);
const listed = await client.getAll({ filters: { user_id: user }, page: 1, pageSize: 10 });
out.listCount = listed.count;
out.listIds = listed.results.map((r) => r.id);
const got = await client.get(memoryId);
out.get = got.memory;
const history = await client.history(memoryId);
out.history = history.map((h) => h.event);
out.users = (await client.users()).results.map((u) => [u.type, u.name, u.totalMemories]);
out.feedback = (await client.feedback({ memoryId, feedback: "POSITIVE", feedbackReason: "right" })).feedback;
const hook = await client.createWebhook({ name: "n", url: "http://127.0.0.1:9/h", eventTypes: ["memory_add"] });
out.webhooks = (await client.getWebhooks()).map((w) => [w.name, w.eventTypes]);
await client.deleteWebhook({ webhookId: hook.webhookId });
out.webhooksAfter = (await client.getWebhooks()).length;
const deleted = await client.delete(memoryId);
out.delete = deleted.message;
const after = await client.getAll({ filters: { user_id: user } });
out.afterDelete = after.count;
await client.add([{ role: "user", content: "second memory" }], { userId: user, infer: false, async_mode: false });
const all = await client.deleteAll({ userId: user });
out.deleteAll = all.message;
out.finalCount = (await client.getAll({ filters: { user_id: user } })).count;
try {
  await client.get("00000000-0000-0000-0000-000000000000");
  out.missing = "no error";
} catch (e) {
  out.missing = e.constructor.name;
}
console.log(JSON.stringify(out));
