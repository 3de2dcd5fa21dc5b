// The `consul` npm package (v2), unmodified, against a running `muster agent -dev` (port in
// argv[2]). Each step is what an application using the library does; any difference from
// Consul's answers throws.

const assert = require("assert");
const Consul = require("consul");

async function main() {
  const consul = new Consul({ host: "127.0.0.1", port: Number(process.argv[2]) });

  const leader = await consul.status.leader();
  assert.notStrictEqual(leader, "", "a leader");
  const self = await consul.agent.self();
  const node = self.Config.NodeName;
  const members = await consul.agent.members();
  assert.deepStrictEqual(members.map((m) => m.Name), [node]);

  // KV.
  assert.strictEqual(await consul.kv.set("app/config/db", "postgres://db:5432"), true);
  const entry = await consul.kv.get("app/config/db");
  assert.strictEqual(entry.Value, "postgres://db:5432");
  assert.strictEqual(await consul.kv.set({ key: "app/config/cache", value: "redis", flags: 42 }), true);
  const entries = await consul.kv.get({ key: "app/", recurse: true });
  assert.deepStrictEqual(entries.map((e) => e.Key), ["app/config/cache", "app/config/db"]);
  const keys = await consul.kv.keys({ key: "app/", separator: "/" });
  assert.deepStrictEqual(keys, ["app/config/"]);
  assert.strictEqual(await consul.kv.set({ key: "app/config/db", value: "v2", cas: entry.ModifyIndex }), true);
  // The body is `false`; this library hands a falsy body back as undefined (against Consul too).
  assert.ok(!(await consul.kv.set({ key: "app/config/db", value: "v3", cas: entry.ModifyIndex })));
  assert.strictEqual(await consul.kv.get("nothing/here"), undefined);

  // Sessions and locks.
  const session = await consul.session.create({ name: "leader", ttl: "15s" });
  assert.strictEqual(await consul.kv.set({ key: "service/leader", value: node, acquire: session.ID }), true);
  const held = await consul.kv.get("service/leader");
  assert.strictEqual(held.Session, session.ID);
  const info = await consul.session.info(session.ID);
  assert.strictEqual(info.TTL, "15s");
  await consul.session.renew(session.ID);
  assert.strictEqual(await consul.kv.set({ key: "service/leader", value: node, release: session.ID }), true);
  await consul.session.destroy(session.ID);

  // An agent service with a TTL check.
  await consul.agent.service.register({ name: "web", id: "web-1", port: 80, tags: ["express"], check: { ttl: "30s" } });
  assert.deepStrictEqual(await consul.health.service({ service: "web", passing: true }), []);
  await consul.agent.check.pass({ id: "service:web-1", note: "up" });
  const healthy = await consul.health.service({ service: "web", passing: true });
  assert.deepStrictEqual(healthy.map((i) => i.Service.ID), ["web-1"]);
  const services = await consul.catalog.service.list();
  assert.deepStrictEqual(services.web, ["express"]);
  const agentServices = await consul.agent.service.list();
  assert.ok(agentServices["web-1"]);
  await consul.agent.service.deregister("web-1");

  // A transaction.
  const result = await consul.transaction.create([
    { KV: { Verb: "set", Key: "txn/a", Value: Buffer.from("1").toString("base64") } },
    { KV: { Verb: "get", Key: "txn/a" } },
  ]);
  assert.strictEqual(result.Results[1].KV.Value, Buffer.from("1").toString("base64"));

  assert.strictEqual(await consul.kv.del({ key: "app", recurse: true }), true);

  // ACLs off, Consul's default: the ACL API says so, with its status and words.
  await assert.rejects(consul.acl.bootstrap(), (error) => {
    assert.strictEqual(error.statusCode, 401);
    assert.strictEqual(error.message, "ACL support disabled");
    return true;
  });
  console.log("node consul: every step answered as Consul answers");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
