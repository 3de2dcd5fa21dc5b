//! `/v1/snapshot` over real HTTP against a one-server cluster: the archive Consul writes, a
//! restore that brings back exactly what was saved, damaged archives refused with Consul's
//! messages and nothing changed, and blocked readers answered by a restore
//! (`consul-behaviour.md` §1.7).

mod common;

use std::io::Read;
use std::time::Duration;

use common::{call, start_with_api};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use muster_core::fsm::{Command, Fsm, KvSet, RESTORE_BYTES_MAX, RESTORE_STAGED_BYTES_MAX};
use sha2::{Digest, Sha256};

/// A snapshot as the API answers it.
struct Saved {
    status: u16,
    index: u64,
    content_type: String,
    archive: Vec<u8>,
}

async fn save(url: String) -> Saved {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&url).call().expect("the agent answers");
        let header = |name: &str| response.headers().get(name).unwrap().to_str().unwrap().to_owned();
        let index = header("X-Consul-Index").parse().unwrap();
        let content_type = header("Content-Type");
        let status = response.status().as_u16();
        let archive = response.body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap();
        Saved { status, index, content_type, archive }
    })
    .await
    .unwrap()
}

/// The archive's members, in order.
fn members(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tar = Vec::new();
    GzDecoder::new(archive).read_to_end(&mut tar).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_str().unwrap().to_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// An archive of these members, as given (sums and all).
fn pack(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, data) in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// An archive of `meta` and `state` with their right sums.
fn pack_summed(meta: &[u8], state: &[u8]) -> Vec<u8> {
    let sums = format!("{}  meta.json\n{}  state.bin\n", sha256_hex(meta), sha256_hex(state));
    pack(&[("meta.json", meta), ("state.bin", state), ("SHA256SUMS", sums.as_bytes())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_back_exactly_what_was_saved() {
    let (addr, api) = start_with_api("snapshot-round-trip").await;
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(call("PUT", url("/v1/kv/a"), "1").await.body, "true");
    assert_eq!(call("PUT", url("/v1/kv/b?flags=5"), "2").await.body, "true");
    assert_eq!(call("PUT", url("/v1/kv/dir/c"), "3").await.body, "true");
    let saved_node = r#"{"Node": "saved", "Address": "10.0.0.5", "Service": {"Service": "web", "Port": 80}}"#;
    assert_eq!(call("PUT", url("/v1/catalog/register"), saved_node).await.body, "true");
    let session = call("PUT", url("/v1/session/create"), r#"{"Name": "s", "TTL": "30s"}"#).await;
    let session_id = session.body.split('"').nth(3).unwrap().to_owned();
    let reads = ["/v1/kv/?recurse", "/v1/catalog/nodes", "/v1/catalog/services", "/v1/catalog/node/saved"];
    let mut before = Vec::new();
    for path in reads {
        let answer = call("GET", url(path), "").await;
        before.push((answer.status, answer.index, answer.body));
    }

    let saved = save(url("/v1/snapshot")).await;
    let applied = api.consensus.as_ref().unwrap().raft.status().applied;
    assert_eq!(saved.status, 200);
    assert_eq!(saved.content_type, "application/x-gzip");
    assert_eq!(saved.index, applied, "X-Consul-Index is the snapshot's index");
    let members = members(&saved.archive);
    let names: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["meta.json", "state.bin", "SHA256SUMS"]);
    let (meta, state) = (&members[0].1, &members[1].1);
    let meta_json: serde_json::Value = serde_json::from_slice(meta).unwrap();
    let term = api.consensus.as_ref().unwrap().raft.status().term;
    let id = meta_json["ID"].as_str().unwrap();
    assert!(id.starts_with(&format!("{term}-{applied}-")), "{id}");
    assert_eq!(
        String::from_utf8(meta.clone()).unwrap(),
        format!(r#"{{"Version":1,"ID":"{id}","Index":{applied},"Term":{term},"Size":{}}}"#, state.len())
            + "\n"
    );
    assert_eq!(
        String::from_utf8(members[2].1.clone()).unwrap(),
        format!("{}  meta.json\n{}  state.bin\n", sha256_hex(meta), sha256_hex(state))
    );
    let saved_state = Fsm::restore(state).expect("state.bin is the state machine's snapshot");
    assert_eq!(saved_state.applied(), applied);

    // Everything changes after the save.
    assert_eq!(call("PUT", url("/v1/kv/a"), "changed").await.body, "true");
    assert_eq!(call("DELETE", url("/v1/kv/b"), "").await.body, "true");
    assert_eq!(call("PUT", url("/v1/kv/new"), "x").await.body, "true");
    assert_eq!(call("PUT", url("/v1/catalog/deregister"), r#"{"Node": "saved"}"#).await.body, "true");
    let later = r#"{"Node": "later", "Address": "10.0.0.6", "Service": {"Service": "db", "Port": 5432}}"#;
    assert_eq!(call("PUT", url("/v1/catalog/register"), later).await.body, "true");
    assert_eq!(call("PUT", url(&format!("/v1/session/destroy/{session_id}")), "").await.body, "true");
    assert!(!api.consensus.as_ref().unwrap().store.duties().read(|duties| duties.times(&session_id)));

    let restored = call("PUT", url("/v1/snapshot"), saved.archive.clone()).await;
    assert_eq!((restored.status, restored.body.as_str()), (200, ""));
    for (path, before) in reads.into_iter().zip(&before) {
        let answer = call("GET", url(path), "").await;
        assert_eq!(&(answer.status, answer.index, answer.body), before, "{path}");
    }
    assert_eq!(call("GET", url("/v1/kv/new"), "").await.status, 404);
    assert_eq!(call("GET", url("/v1/catalog/node/later"), "").await.body, "null");
    // The whole state, tombstones and sessions included, is the saved one, indexes and all (the
    // restore's own index is past the snapshot's, so none is lowered).
    api.consensus.as_ref().unwrap().store.read(|fsm| {
        assert!(fsm.applied() > applied);
        assert_eq!(fsm.kv(), saved_state.kv());
        assert_eq!(fsm.catalog(), saved_state.catalog());
        assert_eq!(fsm.sessions(), saved_state.sessions());
    });
    assert!(
        api.consensus.as_ref().unwrap().store.duties().read(|duties| duties.times(&session_id)),
        "its TTL timer runs again"
    );

    // A stale read may serve a snapshot too.
    assert_eq!(save(url("/v1/snapshot?stale")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_oversized_archives_are_refused_and_change_nothing() {
    let (addr, _api) = start_with_api("snapshot-damaged").await;
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(call("PUT", url("/v1/kv/k"), "v").await.body, "true");
    let saved = save(url("/v1/snapshot")).await;
    assert_eq!(call("PUT", url("/v1/kv/k"), "after").await.body, "true");
    let before = call("GET", url("/v1/kv/?recurse"), "").await;

    let members = members(&saved.archive);
    let (meta, state) = (members[0].1.clone(), members[1].1.clone());
    let mut flipped = state.clone();
    flipped[state.len() / 2] ^= 0x01;
    let flipped = pack(&[("meta.json", &meta), ("state.bin", &flipped), ("SHA256SUMS", &members[2].1)]);
    let sums_only = pack(&[("SHA256SUMS", &members[2].1)]);
    let extra = pack(&[("meta.json", &meta), ("state.bin", &state), ("evil", b"x")]);
    let short_meta = pack_summed(br#"{"Version":1}"#, &state);
    let wrong_size = pack_summed(
        &serde_json::to_vec(
            &serde_json::json!({"Version": 1, "ID": "1-2-3", "Index": 2, "Term": 1, "Size": 3}),
        )
        .unwrap(),
        &state,
    );
    let meta_for = |size: usize| format!(r#"{{"Version":1,"ID":"1-2-3","Index":2,"Term":1,"Size":{size}}}"#);
    let not_ours = pack_summed(meta_for(5).as_bytes(), b"hello");
    let trailer_cut = saved.archive[..saved.archive.len() - 8].to_vec();
    let mut garbage_after = saved.archive.clone();
    garbage_after.extend_from_slice(b"trailing garbage");
    // A state.bin one byte over what a restore stages, streamed into the archive (zeros: it
    // compresses to almost nothing, and is refused while it is read).
    let too_big = {
        let size = RESTORE_STAGED_BYTES_MAX + 1;
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let meta = meta_for(size as usize);
        for (name, size, data) in [
            ("meta.json", meta.len() as u64, Box::new(meta.as_bytes()) as Box<dyn Read>),
            ("state.bin", size, Box::new(std::io::repeat(0).take(size))),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_size(size);
            header.set_mode(0o600);
            builder.append_data(&mut header, name, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    };

    let cases: [(&str, Vec<u8>, u16, String); 11] = [
        ("not gzip", b"not a snapshot".to_vec(), 400, "failed to decompress snapshot: gzip: invalid header".into()),
        ("empty", Vec::new(), 400, "failed to decompress snapshot: EOF".into()),
        (
            "a flipped byte in state.bin",
            flipped,
            400,
            r#"failed to read snapshot file: failed checking integrity of snapshot: hash check failed for "state.bin""#
                .into(),
        ),
        (
            "no meta.json or state.bin",
            sums_only,
            400,
            r#"failed to read snapshot file: failed checking integrity of snapshot: hash check failed for "meta.json""#
                .into(),
        ),
        (
            "an unexpected member",
            extra,
            400,
            r#"failed to read snapshot file: unexpected file "evil" in snapshot"#.into(),
        ),
        (
            "metadata without its fields",
            short_meta,
            400,
            "failed to read snapshot file: failed to decode snapshot metadata: missing field `ID` at line 1 column 13"
                .into(),
        ),
        (
            "metadata with the wrong size",
            wrong_size,
            400,
            format!(
                "Raft error when restoring snapshot: failed to write snapshot, size didn't match ({} != 3)",
                state.len()
            ),
        ),
        (
            "a state that is not a muster snapshot",
            not_ours,
            400,
            "failed to restore snapshot: not a muster state snapshot of version 3 to 6".into(),
        ),
        ("the gzip trailer cut off", trailer_cut, 400, "failed to decompress snapshot: unexpected EOF".into()),
        (
            "bytes after the gzip stream",
            garbage_after,
            400,
            "failed to decompress snapshot: invalid gzip header".into(),
        ),
        (
            "a state over the restore limit",
            too_big,
            413,
            format!(
                "failed to read snapshot file: state.bin is over {RESTORE_STAGED_BYTES_MAX} bytes, the most a \
                 restore can carry"
            ),
        ),
    ];
    for (what, archive, status, message) in cases {
        let answer = call("PUT", url("/v1/snapshot"), archive).await;
        assert_eq!((answer.status, answer.body.as_str()), (status, message.as_str()), "{what}");
        let after = call("GET", url("/v1/kv/?recurse"), "").await;
        assert_eq!((after.index, after.body), (before.index, before.body.clone()), "{what}: nothing changed");
    }

    // A truncated archive: where the cut falls decides which read fails first.
    let half = saved.archive[..saved.archive.len() / 2].to_vec();
    let answer = call("PUT", url("/v1/snapshot"), half).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.starts_with("failed to read snapshot file: "), "{}", answer.body);
    assert_eq!(call("GET", url("/v1/kv/?recurse"), "").await.body, before.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_answers_blocked_readers_even_when_their_index_goes_back() {
    let (addr, _api) = start_with_api("snapshot-blocking").await;
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(call("PUT", url("/v1/kv/watched"), "old").await.body, "true");
    let old_index = call("GET", url("/v1/kv/watched"), "").await.index.unwrap();
    let saved = save(url("/v1/snapshot")).await;
    assert_eq!(call("PUT", url("/v1/kv/watched"), "new").await.body, "true");
    let new_index = call("GET", url("/v1/kv/watched"), "").await.index.unwrap();
    assert!(new_index > old_index);

    let watched = tokio::spawn(call("GET", url(&format!("/v1/kv/watched?index={new_index}&wait=30s")), ""));
    let other_index = call("GET", url("/v1/kv/elsewhere"), "").await.index.unwrap();
    let elsewhere =
        tokio::spawn(call("GET", url(&format!("/v1/kv/elsewhere?index={other_index}&wait=30s")), ""));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!watched.is_finished() && !elsewhere.is_finished(), "both readers block");

    let restored = call("PUT", url("/v1/snapshot"), saved.archive).await;
    assert_eq!(restored.status, 200);
    let watched = tokio::time::timeout(Duration::from_secs(10), watched).await.expect("answered").unwrap();
    assert_eq!(watched.status, 200);
    assert_eq!(watched.index, Some(old_index), "the restored key's index, below the one waited on");
    assert_eq!(
        watched.body,
        format!(
            r#"[{{"LockIndex":0,"Key":"watched","Flags":0,"Value":"b2xk","CreateIndex":{old_index},"ModifyIndex":{old_index}}}]"#
        )
    );
    let elsewhere =
        tokio::time::timeout(Duration::from_secs(10), elsewhere).await.expect("answered").unwrap();
    assert_eq!((elsewhere.status, elsewhere.body.as_str()), (404, ""), "every blocked reader is answered");
}

/// A state over one Raft entry (5,000 keys of 1 KiB, built here) restored through the API: it
/// goes in pieces, and every key comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_larger_than_one_raft_entry_is_restored_in_pieces() {
    let (addr, api) = start_with_api("snapshot-large").await;
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(call("PUT", url("/v1/kv/gone"), "soon").await.body, "true");
    let mut source = Fsm::new();
    for i in 0..5_000u64 {
        let set = KvSet { key: format!("big/{i:05}"), value: vec![b'x'; 1024].into(), flags: i };
        source.apply_command(i + 1, 0, &Command::KvSet(set));
    }
    let state = source.snapshot();
    assert!(state.len() > RESTORE_BYTES_MAX, "{} bytes: more than one entry", state.len());
    let meta = format!(r#"{{"Version":1,"ID":"1-5000-0","Index":5000,"Term":1,"Size":{}}}"#, state.len());
    let archive = pack_summed(meta.as_bytes(), &state);

    let restored = call("PUT", url("/v1/snapshot"), archive).await;
    assert_eq!((restored.status, restored.body.as_str()), (200, ""));
    let keys = call("GET", url("/v1/kv/big/?keys"), "").await;
    let keys: Vec<String> = serde_json::from_str(&keys.body).unwrap();
    assert_eq!(keys.len(), 5_000);
    let last = call("GET", url("/v1/kv/big/04999"), "").await;
    let last: serde_json::Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(last[0]["Flags"], 4_999);
    assert_eq!(call("GET", url("/v1/kv/gone"), "").await.status, 404, "the state before is gone");
    // Every index above the restore's own entry was lowered to it (the source ran ahead).
    api.consensus.as_ref().unwrap().store.read(|fsm| {
        assert_eq!(fsm.kv().len(), 5_000);
        assert!(fsm.kv().index() <= fsm.applied(), "indexes lowered to the restore's entry");
    });
}
