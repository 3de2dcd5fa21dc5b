//! The state machine against Consul's semantics, case by case, and against a plain reference
//! model over random operation sequences (proptest, with shrinking).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn set(key: &str, value: &'static str, flags: u64) -> Command {
    Command::KvSet(KvSet { key: key.into(), value: Bytes::from_static(value.as_bytes()), flags })
}

fn cas(key: &str, value: &'static str, index: Index) -> Command {
    let set = KvSet { key: key.into(), value: Bytes::from_static(value.as_bytes()), flags: 0 };
    Command::KvCas(KvCas { set, index })
}

/// Applies commands at indexes 1, 2, ... through the encoding, as the log delivers them.
fn run(fsm: &mut Fsm, commands: &[Command]) -> Vec<Response> {
    commands
        .iter()
        .map(|command| {
            let index = fsm.applied() + 1;
            fsm.apply(index, &command.encode()).expect("decodes").response
        })
        .collect()
}

#[test]
fn indexes_follow_consul_create_modify_and_the_table_index_for_missing_keys() {
    let mut fsm = Fsm::new();
    run(&mut fsm, &[set("web/a", "1", 7), set("web/b", "2", 0), set("web/a", "3", 0)]);
    let (index, entry) = fsm.kv().get("web/a");
    let entry = entry.unwrap();
    assert_eq!((index, entry.create_index, entry.modify_index, entry.flags), (3, 1, 3, 0));
    assert_eq!(entry.value, Bytes::from_static(b"3"), "a plain put resets the flags");
    assert_eq!(fsm.kv().get("web/zzz"), (3, None), "missing: the table index");
    assert_eq!(fsm.kv().list("web/").0, 3);
    assert_eq!(fsm.kv().list("nothing/"), (3, vec![]), "nothing there: the table index");
}

#[test]
fn check_and_set_creates_only_when_absent_with_zero_and_otherwise_matches_modify_index() {
    let mut fsm = Fsm::new();
    let responses = run(&mut fsm, &[cas("k", "a", 0), cas("k", "b", 0), cas("k", "c", 1), cas("k", "d", 1)]);
    assert_eq!(
        responses,
        [Response::Bool(true), Response::Bool(false), Response::Bool(true), Response::Bool(false)]
    );
    assert_eq!(fsm.kv().get("k").1.unwrap().value, Bytes::from_static(b"c"));
    let refused = run(&mut fsm, &[Command::KvDeleteCas(KvDeleteCas { key: "k".into(), index: 0 })]);
    assert_eq!(refused, [Response::Bool(false)], "delete-cas with 0 never deletes");
    let deleted = run(&mut fsm, &[Command::KvDeleteCas(KvDeleteCas { key: "k".into(), index: 3 })]);
    assert_eq!(deleted, [Response::Bool(true)]);
    assert_eq!(fsm.kv().get("k"), (6, None));
}

#[test]
fn deletes_leave_tombstones_that_keep_a_prefix_index_from_going_back_until_reaped() {
    let mut fsm = Fsm::new();
    run(&mut fsm, &[set("a/1", "x", 0), set("a/2", "y", 0), set("b/1", "z", 0)]);
    run(&mut fsm, &[Command::KvDelete(KvDelete { key: "a/2".into() })]);
    // The newest write under a/ is gone, but its tombstone answers for it: index 4, not 1.
    assert_eq!(fsm.kv().list("a/").0, 4);
    assert_eq!(fsm.kv().keys("a/", None), (4, vec!["a/1".to_owned()]));
    run(&mut fsm, &[Command::KvDeleteTree(KvDeleteTree { prefix: "a/".into() })]);
    assert_eq!(fsm.kv().list("a/"), (5, vec![]));
    assert_eq!(fsm.kv().tombstones(), 2);
    let reaped = run(&mut fsm, &[Command::TombstoneReap(TombstoneReap { up_to: 4 })]);
    assert_eq!(reaped, [Response::Reaped(1)]);
    assert_eq!(fsm.kv().list("a/").0, 5, "the tombstone at 5 remains");
}

#[test]
fn keys_with_a_separator_stop_at_the_first_separator_after_the_prefix() {
    let mut fsm = Fsm::new();
    run(
        &mut fsm,
        &[set("web/bar", "", 0), set("web/subdir/a", "", 0), set("web/subdir/b", "", 0), set("webx", "", 0)],
    );
    let (index, keys) = fsm.kv().keys("web/", Some("/"));
    assert_eq!(keys, ["web/bar", "web/subdir/"]);
    assert_eq!(index, 3, "collapsed keys count towards the index");
    assert_eq!(fsm.kv().keys("", Some("/")).1, ["web/", "webx"]);
}

#[test]
fn refused_commands_change_nothing_but_the_applied_index() {
    let mut fsm = Fsm::new();
    let big = Bytes::from(vec![0u8; VALUE_BYTES_MAX + 1]);
    let too_large = Command::KvSet(KvSet { key: "k".into(), value: big, flags: 0 });
    assert_eq!(
        too_large.validate(),
        Err(CommandError::ValueTooLarge { key: "k".into(), size: VALUE_BYTES_MAX + 1, max: VALUE_BYTES_MAX })
    );
    let responses = run(&mut fsm, &[too_large, set("", "v", 0)]);
    assert!(matches!(responses[..], [Response::Rejected(_), Response::Rejected(CommandError::MissingKey)]));
    assert_eq!((fsm.kv().len(), fsm.kv().index(), fsm.applied()), (0, 0, 2));
}

#[test]
fn unknown_commands_are_skipped_only_when_marked_ignorable() {
    let mut fsm = Fsm::new();
    let applied = fsm.apply(1, &[COMMAND_VERSION, 0x90, 1, 2, 3]).unwrap();
    assert_eq!(applied.response, Response::Ignored);
    assert_eq!(
        fsm.apply(2, &[COMMAND_VERSION, 0x30]),
        Err(ApplyError { index: 2, error: DecodeError::UnknownType(0x30) })
    );
    assert_eq!(fsm.apply(3, &[9, 1]).unwrap_err().error, DecodeError::UnsupportedVersion(9));
    let mut encoded = set("k", "v", 0).encode().to_vec();
    encoded.push(0);
    assert_eq!(fsm.apply(4, &encoded).unwrap_err().error, DecodeError::TrailingBytes(1));
}

#[test]
fn a_snapshot_restores_the_same_state_and_damage_is_refused() {
    let mut fsm = Fsm::new();
    run(&mut fsm, &[set("a", "1", 3), set("b", "2", 0), Command::KvDelete(KvDelete { key: "a".into() })]);
    let bytes = fsm.snapshot();
    let restored = Fsm::restore(&bytes).unwrap();
    assert_eq!(restored, fsm);
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(Fsm::restore(b"nope"), Err(SnapshotError::Format));
    for cut in 5..bytes.len() {
        assert!(Fsm::restore(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

// --- the reference model ----------------------------------------------------------------------

/// Consul's KV semantics written the plain way: linear scans, no cleverness.
#[derive(Default)]
struct Model {
    /// key → (value, flags, create, modify)
    entries: BTreeMap<String, (Bytes, u64, Index, Index)>,
    tombstones: Vec<(String, Index)>,
    table: Index,
}

impl Model {
    fn apply(&mut self, index: Index, command: &Command) -> Response {
        if let Err(error) = command.validate() {
            return Response::Rejected(error);
        }
        let write = |model: &mut Model, key: &str, value: &Bytes, flags: u64| {
            let create = model.entries.get(key).map_or(index, |e| e.2);
            model.entries.insert(key.to_owned(), (value.clone(), flags, create, index));
            model.table = index;
        };
        let delete = |model: &mut Model, key: &str| {
            if model.entries.remove(key).is_some() {
                model.tombstones.retain(|(k, _)| k != key);
                model.tombstones.push((key.to_owned(), index));
                model.table = index;
            }
        };
        let modify = |model: &Model, key: &str| model.entries.get(key).map_or(0, |e| e.3);
        match command {
            Command::KvSet(s) => {
                write(self, &s.key, &s.value, s.flags);
                Response::Bool(true)
            }
            Command::KvCas(c) => {
                let ok = modify(self, &c.set.key) == c.index;
                if ok {
                    write(self, &c.set.key, &c.set.value, c.set.flags);
                }
                Response::Bool(ok)
            }
            Command::KvDelete(d) => {
                delete(self, &d.key);
                Response::Bool(true)
            }
            Command::KvDeleteCas(d) => {
                let ok = d.index != 0 && modify(self, &d.key) == d.index;
                if ok {
                    delete(self, &d.key);
                }
                Response::Bool(ok)
            }
            Command::KvDeleteTree(t) => {
                let keys: Vec<String> =
                    self.entries.keys().filter(|k| k.starts_with(&t.prefix)).cloned().collect();
                for key in keys {
                    delete(self, &key);
                }
                Response::Bool(true)
            }
            Command::TombstoneReap(r) => {
                let before = self.tombstones.len();
                self.tombstones.retain(|&(_, i)| i > r.up_to);
                let reaped = before - self.tombstones.len();
                if reaped > 0 {
                    self.table = index;
                }
                Response::Reaped(reaped)
            }
        }
    }

    fn prefix_index(&self, prefix: &str) -> Index {
        let newest = self
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.3)
            .chain(self.tombstones.iter().filter(|(k, _)| k.starts_with(prefix)).map(|&(_, i)| i))
            .max()
            .unwrap_or(0);
        if prefix.is_empty() || newest == 0 {
            self.table
        } else {
            newest
        }
    }

    fn keys(&self, prefix: &str, separator: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for key in self.entries.keys().filter(|k| k.starts_with(prefix)) {
            let rest = &key[prefix.len()..];
            let cut = match rest.find(separator) {
                Some(at) if !separator.is_empty() => key[..prefix.len() + at + separator.len()].to_owned(),
                _ => key.clone(),
            };
            if !out.contains(&cut) {
                out.push(cut);
            }
        }
        out
    }
}

fn key() -> impl Strategy<Value = String> {
    "[ab/]{0,4}"
}

fn command() -> impl Strategy<Value = Command> {
    let value =
        prop_oneof![Just(Bytes::new()), Just(Bytes::from_static(b"v")), Just(Bytes::from_static(b"w"))];
    prop_oneof![
        4 => (key(), value.clone(), 0..3u64).prop_map(|(key, value, flags)| Command::KvSet(KvSet { key, value, flags })),
        2 => (key(), value, 0..12u64).prop_map(|(key, value, index)| Command::KvCas(KvCas { set: KvSet { key, value, flags: 0 }, index })),
        2 => key().prop_map(|key| Command::KvDelete(KvDelete { key })),
        1 => (key(), 0..12u64).prop_map(|(key, index)| Command::KvDeleteCas(KvDeleteCas { key, index })),
        1 => key().prop_map(|prefix| Command::KvDeleteTree(KvDeleteTree { prefix })),
        1 => (0..12u64).prop_map(|up_to| Command::TombstoneReap(TombstoneReap { up_to })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_store_answers_as_the_reference_model_does(commands in prop::collection::vec(command(), 1..40)) {
        let mut fsm = Fsm::new();
        let mut model = Model::default();
        for (i, command) in commands.iter().enumerate() {
            let index = i as Index + 1;
            let applied = fsm.apply(index, &command.encode()).expect("decodes");
            prop_assert_eq!(&applied.response, &model.apply(index, command), "command {:?}", command);
            for prefix in ["", "a", "a/", "b", "ab", "/"] {
                let (list_index, entries) = fsm.kv().list(prefix);
                let expected: Vec<(String, Bytes, u64, Index, Index)> = model.entries.iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(k, e)| (k.clone(), e.0.clone(), e.1, e.2, e.3))
                    .collect();
                let got: Vec<(String, Bytes, u64, Index, Index)> = entries.iter()
                    .map(|e| (e.key.clone(), e.value.clone(), e.flags, e.create_index, e.modify_index))
                    .collect();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(list_index, model.prefix_index(prefix));
                prop_assert_eq!(fsm.kv().keys(prefix, Some("/")).1, model.keys(prefix, "/"));
                prop_assert_eq!(fsm.kv().get(prefix).0, model.entries.get(prefix).map_or(model.table, |e| e.3));
            }
        }
        // Pure: another replica applying the same log holds the same bytes; a snapshot restores it.
        let mut replica = Fsm::new();
        for (i, command) in commands.iter().enumerate() {
            replica.apply(i as Index + 1, &command.encode()).expect("decodes");
        }
        prop_assert_eq!(replica.snapshot(), fsm.snapshot());
        prop_assert_eq!(Fsm::restore(&fsm.snapshot()).expect("restores"), fsm);
    }

    #[test]
    fn every_command_round_trips_through_its_encoding(command in command()) {
        prop_assert_eq!(Command::decode(&command.encode()), Ok(Some(command)));
    }
}
