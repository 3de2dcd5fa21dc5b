"""py-consul, unmodified, against a running `muster agent -dev` (port in argv[1]).

Each step is what an application using the library does; any difference from Consul's
answers raises.
"""

import base64
import sys
import time

import consul

c = consul.Consul(host="127.0.0.1", port=int(sys.argv[1]))

# Status and agent.
assert c.status.leader() != "", "a leader"
me = c.agent.self()
node = me["Config"]["NodeName"]
members = c.agent.members()
assert [m["Name"] for m in members] == [node], members
assert members[0]["Status"] == 1 and members[0]["Tags"]["role"] == "consul", members
assert [m["Name"] for m in c.agent.members(wan=True)] == [node + ".dc1"]

# KV: put, get, recurse, keys with a separator, flags, CAS, delete.
assert c.kv.put("app/config/db", "postgres://db:5432") is True
index, entry = c.kv.get("app/config/db")
assert entry["Value"] == b"postgres://db:5432", entry
assert entry["CreateIndex"] == entry["ModifyIndex"] == int(index)
assert c.kv.put("app/config/cache", "redis", flags=42) is True
index, entries = c.kv.get("app/", recurse=True)
assert [e["Key"] for e in entries] == ["app/config/cache", "app/config/db"], entries
assert entries[0]["Flags"] == 42
index, keys = c.kv.get("app/", keys=True, separator="/")
assert keys == ["app/config/"], keys
modify = entry["ModifyIndex"]
assert c.kv.put("app/config/db", "v2", cas=modify) is True
assert c.kv.put("app/config/db", "v3", cas=modify) is False, "the second CAS at the same index fails"
index, missing = c.kv.get("nothing/here")
assert missing is None
# A blocking read that nothing wakes answers the same index after its wait.
index, _ = c.kv.get("app/config/db")
again, _ = c.kv.get("app/config/db", index=index, wait="200ms")
assert again == index

# Sessions and locks.
sid = c.session.create(name="leader-election", ttl=15)
assert c.kv.put("service/leader", node, acquire=sid) is True
index, held = c.kv.get("service/leader")
assert held["Session"] == sid and held["LockIndex"] == 1, held
index, info = c.session.info(sid)
assert info["ID"] == sid and info["TTL"] == "15s", info
assert c.session.renew(sid)["ID"] == sid
other = c.session.create()
assert c.kv.put("service/leader", "me-too", acquire=other) is False
assert c.kv.put("service/leader", node, release=sid) is True
c.session.destroy(sid)
c.session.destroy(other)

# An agent service with a TTL check: critical until passed, then healthy.
c.agent.service.register("web", service_id="web-1", port=80, tags=["rails"], check=consul.Check.ttl("30s"))
index, nodes = c.health.service("web", passing=True)
assert nodes == [], "a new check starts critical"
c.agent.check.ttl_pass("service:web-1", "up")
index, nodes = c.health.service("web", passing=True)
assert [n["Service"]["ID"] for n in nodes] == ["web-1"], nodes
assert nodes[0]["Node"]["Node"] == node
index, services = c.catalog.services()
assert services["web"] == ["rails"] and "consul" in services, services
index, instances = c.catalog.service("web", tag="rails")
assert instances[0]["ServicePort"] == 80
assert "web-1" in c.agent.services()
c.agent.service.deregister("web-1")
assert "web-1" not in c.agent.services()

# The catalog API directly, and a transaction.
assert c.catalog.register("ext-db", "10.1.2.3", service={"Service": "db", "Port": 5432}) is True
index, nodes = c.catalog.nodes()
assert "ext-db" in [n["Node"] for n in nodes]
value = base64.b64encode(b"1").decode()
result = c.txn.put([{"KV": {"Verb": "set", "Key": "txn/a", "Value": value}}, {"KV": {"Verb": "get", "Key": "txn/a"}}])
assert result["Results"][1]["KV"]["Value"] == value, result
assert c.kv.delete("app", recurse=True) is True
index, gone = c.kv.get("app/", recurse=True)
assert gone is None

# User events: fired into gossip, listed by the agents that received them (this one included).
fired = c.event.fire("deploy", "v2")
assert fired["Name"] == "deploy" and len(fired["ID"]) == 36, fired
for _ in range(100):
    index, events = c.event.list(name="deploy")
    if events:
        break
    time.sleep(0.05)
assert [e["ID"] for e in events] == [fired["ID"]], events
assert events[0]["Payload"] == b"v2", events  # py-consul decodes the base64

# ACLs off, Consul's default: the ACL API says so, and the library raises its ACLDisabled.
try:
    c.acl.token.list()
    raise AssertionError("the ACL API answered with ACLs off")
except consul.ACLDisabled as disabled:
    assert "ACL support disabled" in str(disabled), disabled

print("py-consul: every step answered as Consul answers")
