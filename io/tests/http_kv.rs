//! The KV, session and status APIs over real HTTP against a one-server cluster, answered as
//! Consul answers (`consul-behaviour.md` §0, §1.1, §1.6, §1.7).

mod common;

use std::time::Duration;

use common::{call, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_reads_and_writes_answer_as_consul_does() {
    let addr = start("kv").await;
    let url = |path: &str| format!("http://{addr}{path}");

    let missing = call("GET", url("/v1/kv/web/config"), b"").await;
    assert_eq!((missing.status, missing.body.as_str()), (404, ""));
    assert!(missing.index.unwrap() >= 1, "a 404 still carries an index to block on");

    let put = call("PUT", url("/v1/kv/web/config?flags=42"), b"hello").await;
    assert_eq!(
        (put.status, put.body.as_str(), put.content_type.as_deref()),
        (200, "true", Some("application/json"))
    );
    let got = call("GET", url("/v1/kv/web/config"), b"").await;
    let index = got.index.unwrap();
    assert_eq!(
        got.body,
        format!(
            r#"[{{"LockIndex":0,"Key":"web/config","Flags":42,"Value":"aGVsbG8=","CreateIndex":{index},"ModifyIndex":{index}}}]"#
        )
    );
    let raw = call("GET", url("/v1/kv/web/config?raw"), b"").await;
    assert_eq!((raw.body.as_str(), raw.content_type.as_deref()), ("hello", Some("text/plain")));

    // An empty value is `null`.
    call("PUT", url("/v1/kv/web/sub/empty"), b"").await;
    let empty = call("GET", url("/v1/kv/web/sub/empty"), b"").await;
    assert!(empty.body.contains(r#""Value":null"#), "{}", empty.body);

    let keys = call("GET", url("/v1/kv/web/?keys&separator=/"), b"").await;
    assert_eq!(keys.body, r#"["web/config","web/sub/"]"#);
    let root = call("GET", url("/v1/kv/?keys"), b"").await;
    assert_eq!(root.body, r#"["web/config","web/sub/empty"]"#);
    let none = call("GET", url("/v1/kv/nothing/?keys"), b"").await;
    assert_eq!(none.status, 404);
    let tree = call("GET", url("/v1/kv/web?recurse"), b"").await;
    assert_eq!(tree.body.matches("\"Key\"").count(), 2);
    let pretty = call("GET", url("/v1/kv/web/config?pretty"), b"").await;
    assert!(pretty.body.starts_with("[\n    {\n        \"LockIndex\": 0,") && pretty.body.ends_with("]\n"));

    // Check-and-set: 0 creates only; the current ModifyIndex wins once.
    assert_eq!(call("PUT", url("/v1/kv/web/config?cas=0"), b"x").await.body, "false");
    assert_eq!(call("PUT", url(&format!("/v1/kv/web/config?cas={index}")), b"new").await.body, "true");
    assert_eq!(call("PUT", url(&format!("/v1/kv/web/config?cas={index}")), b"again").await.body, "false");
    assert_eq!(call("DELETE", url("/v1/kv/web/config?cas=1"), b"").await.body, "false");
    assert_eq!(call("DELETE", url("/v1/kv/web?recurse"), b"").await.body, "true");
    assert_eq!(call("GET", url("/v1/kv/web?recurse"), b"").await.status, 404);
    assert_eq!(call("GET", url("/v1/kv/?keys"), b"").await.body, "[]", "the root answers an empty list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_consul_errors_and_change_nothing() {
    let addr = start("bad").await;
    let url = |path: &str| format!("http://{addr}{path}");
    let before = call("GET", url("/v1/kv/?recurse"), b"").await.index.unwrap();
    let cases: [(&str, String, &[u8], u16, &str); 8] = [
        ("GET", url("/v1/kv/"), b"", 400, "Missing key name"),
        ("PUT", url("/v1/kv/"), b"v", 400, "Missing key name"),
        ("PUT", url("/v1/kv/k?cas=1&acquire=s"), b"v", 400, "Conflicting flags: acquire=s&cas=1\n"),
        ("DELETE", url("/v1/kv/k?recurse&cas=1"), b"", 400, "Conflicting flags: cas=1&recurse=\n"),
        ("PUT", url("/v1/kv/k?flags=x"), b"v", 400, "strconv.ParseUint: parsing \"x\": invalid syntax"),
        (
            "GET",
            url("/v1/kv/k?stale&consistent"),
            b"",
            400,
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
        ("GET", url("/v1/kv/k?dc=dc9"), b"", 500, "No path to datacenter"),
        ("PUT", url("/v1/kv/k?acquire=no-such-session"), b"v", 500, "invalid session \"no-such-session\""),
    ];
    for (method, url, body, status, reason) in cases {
        let answer = call(method, url.clone(), body).await;
        assert_eq!((answer.status, answer.body.as_str()), (status, reason), "{method} {url}");
    }
    static BIG: [u8; 600_000] = [b'x'; 600_000];
    let big = call("PUT", url("/v1/kv/big"), &BIG).await;
    assert_eq!(big.status, 413);
    assert!(
        big.body.starts_with("Request body(600000 bytes) too large, max size: 524288 bytes."),
        "{}",
        big.body
    );
    let after = call("GET", url("/v1/kv/?recurse"), b"").await;
    assert_eq!((after.status, after.index.unwrap()), (404, before), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_returns_when_its_key_changes_and_not_for_other_keys() {
    let addr = start("blocking").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    call("PUT", url("/v1/kv/watched"), b"1").await;
    let index = call("GET", url("/v1/kv/watched"), b"").await.index.unwrap();

    // Nothing changes: the read waits out its wait and answers the same index.
    let quiet = call("GET", url(&format!("/v1/kv/watched?index={index}&wait=300ms")), b"").await;
    assert_eq!(quiet.index, Some(index));

    let blocked = tokio::spawn(call("GET", url(&format!("/v1/kv/watched?index={index}&wait=30s")), b""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    call("PUT", url("/v1/kv/other"), b"unrelated").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished(), "a write to another key does not answer the reader");
    call("PUT", url("/v1/kv/watched"), b"2").await;
    let answer = tokio::time::timeout(Duration::from_secs(10), blocked).await.expect("woken").unwrap();
    assert!(answer.index.unwrap() > index);
    assert!(answer.body.contains(r#""Value":"Mg==""#), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_leader_and_peers() {
    let addr = start("status").await;
    assert_eq!(call("GET", format!("http://{addr}/v1/status/leader"), b"").await.body, r#""127.0.0.1:8300""#);
    assert_eq!(
        call("GET", format!("http://{addr}/v1/status/peers"), b"").await.body,
        r#"["127.0.0.1:8300"]"#
    );
}

/// The `ID` of a session-create answer.
fn session_id(body: &str) -> String {
    let id = body.strip_prefix(r#"{"ID":""#).and_then(|rest| rest.strip_suffix(r#""}"#)).expect(body);
    assert_eq!(id.len(), 36, "a UUID: {id}");
    id.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_hold_locks_and_their_end_releases_them_behind_a_lock_delay() {
    let addr = start("sessions").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let first = session_id(&call("PUT", url("/v1/session/create"), br#"{"Name": "web-lock"}"#).await.body);
    let second = session_id(&call("PUT", url("/v1/session/create"), b"").await.body);
    let info = call("GET", url(&format!("/v1/session/info/{first}")), b"").await;
    // Entries: 1 the leader's no-op, 2 node1's registration, 3 and 4 the sessions.
    let expected = format!(
        r#"[{{"ID":"{first}","Name":"web-lock","Node":"node1","LockDelay":15000000000,"Behavior":"release","TTL":"","NodeChecks":["serfHealth"],"ServiceChecks":null,"CreateIndex":3,"ModifyIndex":3}}]"#
    );
    assert_eq!((info.body, info.index), (expected, Some(4)), "answered with the session table's index");
    assert_eq!(call("GET", url("/v1/session/list"), b"").await.body.matches("\"ID\"").count(), 2);
    assert_eq!(call("GET", url("/v1/session/node/node1"), b"").await.body.matches("\"ID\"").count(), 2);
    assert_eq!(call("GET", url("/v1/session/info/nope"), b"").await.body, "[]");

    let acquire = |session: &str| url(&format!("/v1/kv/service/leader?acquire={session}"));
    assert_eq!(call("PUT", acquire(&first), b"me").await.body, "true");
    assert_eq!(call("PUT", acquire(&second), b"you").await.body, "false", "held by the first");
    let held = call("GET", url("/v1/kv/service/leader"), b"").await.body;
    assert!(
        held.contains(&format!(
            r#""LockIndex":1,"Key":"service/leader","Flags":0,"Value":"bWU=","Session":"{first}""#
        )),
        "{held}"
    );

    let renewed = call("PUT", url(&format!("/v1/session/renew/{first}")), b"").await;
    assert!(renewed.body.starts_with(&format!(r#"[{{"ID":"{first}""#)), "{}", renewed.body);
    let unknown = call("PUT", url("/v1/session/renew/nope"), b"").await;
    assert_eq!((unknown.status, unknown.body.as_str()), (404, "Session id 'nope' not found"));

    assert_eq!(call("PUT", url(&format!("/v1/session/destroy/{first}")), b"").await.body, "true");
    let released = call("GET", url("/v1/kv/service/leader"), b"").await.body;
    assert!(!released.contains("Session"), "the lock went with its session: {released}");
    assert_eq!(call("PUT", acquire(&second), b"you").await.body, "false", "15 s of lock delay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_requests_are_refused_with_consul_messages() {
    let addr = start("bad-sessions").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let cases: [(&[u8], u16, &str); 5] = [
        (br#"{"Node": "ghost"}"#, 500, "Missing node registration"),
        (br#"{"Behavior": "explode"}"#, 500, "Invalid Behavior setting 'explode'"),
        (br#"{"TTL": "5s"}"#, 500, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"),
        (br#"{"NodeChecks": ["nope"]}"#, 500, "Missing check 'nope' registration"),
        (b"[]", 400, "Request decode failed: expected a JSON object, got a list"),
    ];
    for (body, status, reason) in cases {
        let answer = call("PUT", url("/v1/session/create"), body).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (status, reason),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(call("GET", url("/v1/session/list"), b"").await.body, "[]", "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_all_or_nothing_with_consul_results_and_errors() {
    let addr = start("txn").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let ok = call(
        "PUT",
        url("/v1/txn"),
        br#"[{"KV": {"Verb": "set", "Key": "t/a", "Value": "MQ=="}},
             {"KV": {"Verb": "get", "Key": "t/a"}},
             {"KV": {"Verb": "delete", "Key": "t/none"}}]"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let results: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(results["Errors"], serde_json::Value::Null);
    assert_eq!(results["Results"].as_array().unwrap().len(), 2, "a delete yields no result");
    assert_eq!(
        results["Results"][0]["KV"]["Value"],
        serde_json::Value::Null,
        "a write answers without its value"
    );
    assert_eq!(results["Results"][1]["KV"]["Value"], "MQ==");
    let index = results["Results"][1]["KV"]["ModifyIndex"].as_u64().unwrap();

    let conflict = call(
        "PUT",
        url("/v1/txn"),
        format!(
            r#"[{{"KV": {{"Verb": "set", "Key": "t/b", "Value": "Mg=="}}}},
                {{"KV": {{"Verb": "cas", "Key": "t/a", "Value": "Mw==", "Index": {}}}}},
                {{"KV": {{"Verb": "frob", "Key": "t/a"}}}}]"#,
            index + 100
        ),
    )
    .await;
    assert_eq!(
        (conflict.status, conflict.body.as_str()),
        (409, r#"{"Results":null,"Errors":[{"OpIndex":2,"What":"unknown KV verb \"frob\""}]}"#)
    );
    let stale = call(
        "PUT",
        url("/v1/txn"),
        br#"[{"KV": {"Verb": "set", "Key": "t/b", "Value": "Mg=="}}, {"KV": {"Verb": "cas", "Key": "t/a", "Value": "Mw==", "Index": 1}}]"#,
    )
    .await;
    assert_eq!(
        (stale.status, stale.body.as_str()),
        (
            409,
            r#"{"Results":null,"Errors":[{"OpIndex":1,"What":"failed to set key \"t/a\", index is stale"}]}"#
        )
    );
    assert_eq!(call("GET", url("/v1/kv/t/b"), b"").await.status, 404, "rolled back");

    let read = call("PUT", url("/v1/txn"), br#"[{"KV": {"Verb": "get-tree", "Key": "t/"}}]"#).await;
    assert_eq!(read.status, 200);
    assert!(read.index.is_some(), "a read-only transaction carries read headers");
    let too_many = format!("[{}]", vec![r#"{"KV": {"Verb": "get", "Key": "k"}}"#; 129].join(","));
    let refused = call("PUT", url("/v1/txn"), too_many).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (413, "Transaction contains too many operations (129 > 128)")
    );
    let garbage = call("PUT", url("/v1/txn"), b"{").await;
    assert_eq!(garbage.status, 400);
    assert!(garbage.body.starts_with("Failed to parse body: "), "{}", garbage.body);
}

/// A release names a session that holds nothing here, unknown or expired: Consul answers false
/// and writes nothing; an acquire with it is refused (500 `invalid session`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_with_an_unknown_session_answers_false() {
    let addr = start("release-unknown").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let session = "c1a1f1f1-0000-4000-8000-000000000000";
    let released = call("PUT", url(&format!("/v1/kv/k?release={session}")), b"v").await;
    assert_eq!((released.status, released.body.as_str()), (200, "false"));
    assert_eq!(call("GET", url("/v1/kv/k"), b"").await.status, 404, "nothing written");
    let acquired = call("PUT", url(&format!("/v1/kv/k?acquire={session}")), b"v").await;
    assert_eq!((acquired.status, acquired.body), (500, format!("invalid session \"{session}\"")));
}

/// The leader reaps deleted keys' tombstones once they are older than the tombstone TTL
/// (Consul's 15 min, one second here): a prefix's index keeps the delete until then, and the
/// tombstones do not pile up forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reaps_tombstones_past_their_ttl() {
    let (addr, api) = common::start_leading("kv-tombstones", Duration::from_secs(1)).await;
    let url = |path: &str| format!("http://{addr}{path}");
    for key in ["gc/a", "gc/b", "gc/c"] {
        assert_eq!(call("PUT", url(&format!("/v1/kv/{key}")), b"x").await.status, 200);
    }
    assert_eq!(call("DELETE", url("/v1/kv/gc/a"), b"").await.status, 200);
    assert_eq!(call("DELETE", url("/v1/kv/gc?recurse"), b"").await.status, 200);
    let store = &api.consensus.as_ref().unwrap().store;
    let tombstones = || store.read(|fsm| fsm.kv().tombstones());
    assert_eq!(tombstones(), 2, "gc/a, and one for the prefix gc");
    let started = std::time::Instant::now();
    common::eventually("the tombstones reaped", Duration::from_secs(15), || {
        (tombstones() == 0).then_some(())
    });
    assert!(started.elapsed() >= Duration::from_millis(500), "not before their TTL");
}

/// A session nobody renews ends twice its TTL after its last renewal (Consul's grace), not
/// before, and the lock it held is released: the leader's duties time the session from the
/// entry that created it, a renewal restarts the timer, and the destroy goes through the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_nobody_renews_ends_at_twice_its_ttl_and_releases_its_lock() {
    let (addr, api) = common::start_leading("kv-session-ttl", Duration::from_secs(900)).await;
    let url = |path: &str| format!("http://{addr}{path}");
    let duties = || api.consensus.as_ref().unwrap().store.duties();
    let created = call("PUT", url("/v1/session/create"), br#"{"TTL": "10s", "LockDelay": "0s"}"#).await;
    let id =
        serde_json::from_str::<serde_json::Value>(&created.body).unwrap()["ID"].as_str().unwrap().to_owned();
    assert!(duties().read(|duties| duties.times(&id)), "the leader times it from its entry");
    let untimed = call("PUT", url("/v1/session/create"), br#"{"LockDelay": "0s"}"#).await;
    let untimed: serde_json::Value = serde_json::from_str(&untimed.body).unwrap();
    assert!(!duties().read(|duties| duties.times(untimed["ID"].as_str().unwrap())), "no TTL, no timer");
    let acquired = call("PUT", url(&format!("/v1/kv/service/leader?acquire={id}")), b"me").await;
    assert_eq!(acquired.body, "true");

    // Renewed after 3 s: the session must outlive 3 s + 2 × 10 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let renewed_at = std::time::Instant::now();
    assert_eq!(call("PUT", url(&format!("/v1/session/renew/{id}")), b"").await.status, 200);
    let info = |id: String| {
        let url = url(&format!("/v1/session/info/{id}"));
        async move { call("GET", url, b"").await.body }
    };
    tokio::time::sleep(Duration::from_secs(19)).await;
    assert_ne!(info(id.clone()).await, "[]", "alive before twice its TTL after the renewal");
    let deadline = renewed_at + Duration::from_secs(26);
    while info(id.clone()).await != "[]" {
        assert!(std::time::Instant::now() < deadline, "the session outlived twice its TTL by seconds");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(renewed_at.elapsed() >= Duration::from_secs(20), "ended before twice its TTL");
    assert!(!duties().read(|duties| duties.times(&id)), "its timer stopped");
    let key = call("GET", url("/v1/kv/service/leader"), b"").await;
    assert!(!key.body.contains(r#""Session""#), "the lock is released: {}", key.body);
    assert_eq!(call("PUT", url(&format!("/v1/session/renew/{id}")), b"").await.status, 404);
}
