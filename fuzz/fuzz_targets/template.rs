//! consul-template templates: arbitrary text parsed and rendered over fixed data, with a
//! source that answers every query. Neither parsing nor rendering may panic, whatever the text;
//! errors are fine, and both are deterministic.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use muster_core::template::{Answer, Dependency, RenderOptions, Source, Template, Value};

/// Answers every query with a small value of the shape the function expects.
struct Everything;

impl Source for Everything {
    fn query(&mut self, dependency: &Dependency) -> Answer {
        let pair = Value::record(
            "*dependency.KeyPair",
            vec![("Key", Value::from("a/b")), ("Value", Value::from("v")), ("Path", Value::from("p/a/b"))],
        );
        Answer::Ready(match dependency {
            Dependency::Key { .. } | Dependency::File { .. } => Value::from("value"),
            Dependency::Node { .. } => Value::map(BTreeMap::from([("Node".to_string(), Value::from("n1"))])),
            Dependency::KeyPrefix { .. } => Value::list(vec![pair]),
            _ => Value::list(vec![Value::record(
                "*dependency.HealthService",
                vec![
                    ("Node", Value::from("n1")),
                    ("Tags", Value::list(vec![Value::from("t")])),
                    ("Port", Value::Int(80)),
                ],
            )]),
        })
    }

    fn env(&mut self, name: &str) -> Option<String> {
        Some(format!("env-{name}"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line may choose the delimiters, as `left_delimiter`/`right_delimiter` do.
    let (delims, body) = match text.split_once('\n') {
        Some((first, rest)) if first.starts_with("delims ") => match first[7..].split_once(' ') {
            Some((l, r)) => ((l, r), rest),
            None => (("", ""), text),
        },
        _ => (("", ""), text),
    };
    let data = Value::map(BTreeMap::from([
        ("S".to_string(), Value::from("xyz")),
        ("I".to_string(), Value::Float(17.0)),
        ("L".to_string(), Value::list(vec![Value::Int(1), Value::from("two"), Value::Nil])),
    ]));
    let options = RenderOptions { now_unix_nanos: 1_700_000_000_000_000_000, ..RenderOptions::default() };
    let Ok(template) = Template::parse("fuzz", body, delims) else { return };
    let first = template.render(&data, &mut Everything, &options);
    let second = template.render(&data, &mut Everything, &options);
    assert_eq!(first, second, "rendering is deterministic");
});
