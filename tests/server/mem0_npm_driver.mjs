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
await client.updateWebhook({ webhookId: hook.webhookId, name: "renamed" });
await client.deleteWebhook({ webhookId: hook.webhookId });
out.webhooksAfter = (await client.getWebhooks()).length;
// profiles, projects, batches and exports: every other public method of the client
const settings = await client.updateProfileSettings({ enabled: true, customInstructions: "Be brief." });
out.profileSettings = [settings.enabled, settings.entities.user.customInstructions];
out.profileSettingsGet = (await client.getProfileSettings()).enabled;
const job = await client.generateProfile({ entityId: user, idempotencyKey: `npm-${user}` });
let jobState;
for (let i = 0; i < 300; i++) {
  jobState = (await client.getProfileJob(job.statusUrl)).job;
  if (jobState.status !== "pending") break;
  await new Promise((r) => setTimeout(r, 100));
}
out.profileJob = jobState.status;
const profile = await client.getProfile({ entityId: user });
out.profile = [profile.status, profile.entityId, Object.keys(profile.profile).length];
const sample = await client.sampleProfiles({ limit: 1 });
out.sample = [sample.entityIds, (await client.getProfileJob(sample.jobId)).job.entityType];
await client.updateProject({ customInstructions: "Durable facts only." });
out.project = await client.getProject({ fields: ["custom_instructions"] });
const temp = await client.add([{ role: "user", content: "temporary" }], { userId: user, infer: false, async_mode: false });
const tempId = temp.results[0].id;
out.batchUpdate = (await client.batchUpdate([{ memoryId: tempId, text: "temporary, revised" }])).message;
out.batchDelete = (await client.batchDelete([tempId])).message;
const exp = await client.createMemoryExport({ filters: { user_id: user }, schema: { type: "object" } });
out.export = (await client.getMemoryExport({ memoryExportId: exp.id })).memories.length;
await client.add([{ role: "user", content: "note two" }], { userId: `${user}-2`, infer: false, async_mode: false });
out.deleteUser = (await client.deleteUser({ entity_id: `${user}-2`, entity_type: "user" })).message;
await client.add([{ role: "user", content: "note three" }], { userId: `${user}-3`, infer: false, async_mode: false });
out.deleteUsers = (await client.deleteUsers({ userId: `${user}-3` })).message;
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
