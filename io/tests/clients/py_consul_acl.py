"""py-consul, unmodified, against `muster agent -dev` with ACLs on and deny by default (port in
argv[1]): what an operator's script does on its first day with ACLs. Any difference from
Consul's answers throws."""

import json
import sys
from datetime import datetime, timedelta, timezone

import consul

port = int(sys.argv[1])
anonymous = consul.Consul(port=port)

# The first token, once.
root = anonymous.acl.bootstrap()
assert root["Description"] == "Bootstrap Token (Global Management)", root
assert root["Policies"] == [{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}]
try:
    anonymous.acl.bootstrap()
    raise AssertionError("a second bootstrap was allowed")
except consul.ACLPermissionDenied as denied:
    assert "ACL bootstrap no longer allowed" in str(denied), denied

admin = consul.Consul(port=port, token=root["SecretID"])
assert admin.acl.token.read_self()["AccessorID"] == root["AccessorID"]

# A policy and a token that holds it, expiring in an hour. The library sends the rules as JSON
# (it encodes what it is given: a dict is the rules, as Consul's JSON rule syntax).
rules = {"key_prefix": {"app/": {"policy": "write"}}}
policy = admin.acl.policy.create(name="app-rw", description="app keys", rules=rules)
assert json.loads(policy["Rules"]) == rules, policy
expires = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
token = admin.acl.token.create(description="app", policies_name=["app-rw"], expiration_time=expires)
assert token["Policies"] == [{"ID": policy["ID"], "Name": "app-rw"}], token
assert token["ExpirationTime"] == expires, token
listed = admin.acl.token.list(policy=policy["ID"])
assert [t["AccessorID"] for t in listed] == [token["AccessorID"]], listed
assert {p["Name"] for p in admin.acl.policy.list()} >= {"global-management", "app-rw"}

# The token writes app/ and nothing else; the anonymous token reads nothing.
app = consul.Consul(port=port, token=token["SecretID"])
assert app.kv.put("app/config", "v1") is True
assert app.kv.get("app/config")[1]["Value"] == b"v1"
for attempt in (lambda: app.kv.put("other/x", "v"), lambda: anonymous.kv.get("app/config")):
    try:
        attempt()
        raise AssertionError("allowed without permission")
    except consul.ACLPermissionDenied as denied:
        assert "lacks permission 'key:" in str(denied), denied
try:
    app.acl.token.list()
    raise AssertionError("acl:read allowed")
except consul.ACLPermissionDenied:
    pass

# Update, clone and delete, as the library sends them.
updated = admin.acl.token.update(token["AccessorID"], description="app v2", policies_name=["app-rw"])
assert (updated["Description"], updated["SecretID"]) == ("app v2", token["SecretID"]), updated
clone = admin.acl.token.clone(token["AccessorID"], description="app clone")
assert clone["Policies"] == token["Policies"] and clone["SecretID"] != token["SecretID"], clone
renamed = admin.acl.policy.update(policy["ID"], name="app-write", rules=rules)
assert renamed["Name"] == "app-write", renamed
assert admin.acl.token.read(clone["AccessorID"])["Policies"][0]["Name"] == "app-write"
assert admin.acl.token.delete(clone["AccessorID"]) is True
assert admin.acl.policy.delete(policy["ID"]) is True
try:
    app.kv.put("app/config", "v2")
    raise AssertionError("a token without its policy still writes")
except consul.ACLPermissionDenied:
    pass

print("every step answered as Consul answers")
