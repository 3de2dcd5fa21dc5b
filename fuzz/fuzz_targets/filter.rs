//! `?filter=`: Consul's boolean expressions (io/src/http/filter.rs), parsed from arbitrary text
//! and evaluated on arbitrary JSON answers as well as on three realistic ones (a catalog service
//! entry, a health entry with its `Checks` list, the agent's map of services).
//!
//! The input is the expression, then optionally a NUL byte and the bytes an answer is built
//! from, so the seed corpus (fuzz/corpus-seeds/filter/) is plain expressions. Properties:
//! - parsing never panics, and a refusal carries Consul's prefix;
//! - the expression parses the same through `?filter=` (the query string, URL-encoded);
//! - evaluation is deterministic;
//! - `not (X)` parses whenever X does, and holds for an element exactly where X does not,
//!   wherever X evaluates without error (and fails where X fails).
//!
//! The filter module is compiled in by path with the query module it reads `?filter` from; it
//! needs one thing of the HTTP layer, a 400 error, which `http::HttpError` stands in for below.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

// The modules resolve from the agent's directory: `http::filter` is io/src/http/filter.rs.
#[path = "../../io/src/http"]
mod http {
    pub mod filter;
    #[allow(dead_code)]
    pub mod query;

    pub use query::Query;

    /// The filter module's only use of the HTTP layer: a 400 with a reason.
    #[derive(Debug, PartialEq)]
    pub struct HttpError(pub String);

    impl HttpError {
        pub fn bad_request(reason: impl Into<String>) -> HttpError {
            HttpError(reason.into())
        }
    }
}

use http::filter::Filter;

/// The field names of Consul's answers, so built answers meet the expressions' selectors.
const FIELDS: [&str; 16] = [
    "Node",
    "Service",
    "Checks",
    "Status",
    "Tags",
    "Meta",
    "env",
    "Port",
    "ID",
    "Name",
    "Address",
    "ServiceTags",
    "ServicePort",
    "NodeMeta",
    "Weights",
    "Passing",
];

/// How deep a built answer nests.
const DEPTH_MAX: u32 = 4;

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let parsed = Filter::parse(text);
    let encoded: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
    let from_query = Filter::from_query(&http::Query::parse(Some(&format!("filter={encoded}"))));
    let filter = match parsed {
        Err(refused) => {
            let refused = refused.to_string();
            assert!(refused.starts_with("Failed to create boolean expression evaluator: "), "{refused}");
            assert_eq!(from_query.unwrap_err(), http::HttpError(refused), "the query's filter is the text");
            return;
        }
        Ok(filter) => filter,
    };
    assert!(from_query.expect("the same text parses").is_some());
    let negated = Filter::parse(&format!("not ({text})"))
        .unwrap_or_else(|e| panic!("{text:?} parses but its negation does not: {e}"));

    let mut answers = realistic();
    if let Some(rest) = rest {
        let mut u = Unstructured::new(rest);
        let count = u.int_in_range(1..=4).unwrap_or(1);
        answers.push(Value::Array((0..count).map(|_| value(&mut u, 1)).collect()));
    }
    for answer in answers {
        check(&filter, &negated, answer, text);
    }
});

/// Evaluates `filter` and its negation on `answer`, checking the properties above.
fn check(filter: &Filter, negated: &Filter, answer: Value, text: &str) {
    let first = filter.apply_to(answer.clone());
    assert_eq!(first, filter.apply_to(answer.clone()), "the evaluation is deterministic");
    let elements: Vec<Value> = match &answer {
        Value::Array(items) => items.clone(),
        Value::Object(map) => map.values().cloned().collect(),
        _ => return,
    };
    for element in elements {
        let holds = filter.apply(vec![element.clone()]).map(|kept| kept.len() == 1);
        let negation = negated.apply(vec![element.clone()]).map(|kept| kept.len() == 1);
        match holds {
            Ok(holds) => assert_eq!(negation, Ok(!holds), "not ({text}) on {element}"),
            Err(_) => assert!(negation.is_err(), "not ({text}) evaluates where {text} fails, on {element}"),
        }
    }
}

/// An arbitrary JSON value whose object keys are mostly Consul's field names.
fn value(u: &mut Unstructured, depth: u32) -> Value {
    // An element is an object, as in every answer Consul filters; below it, anything.
    let kinds = if depth >= DEPTH_MAX { 4 } else { 6 };
    let pick = if depth == 1 { kinds } else { u.int_in_range(0..=kinds).unwrap_or(0) };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary().unwrap_or(false)),
        2 => json!(u.arbitrary::<u32>().unwrap_or(0)),
        3 => json!(u.arbitrary::<f64>().unwrap_or(0.0)),
        4 => Value::String(text(u)),
        5 => {
            let count = u.int_in_range(0..=3).unwrap_or(0);
            Value::Array((0..count).map(|_| value(u, depth + 1)).collect())
        }
        _ => {
            let count = u.int_in_range(0..=4).unwrap_or(0);
            let mut map = Map::new();
            for _ in 0..count {
                let key = match u.int_in_range(0..=FIELDS.len()).unwrap_or(0) {
                    n if n < FIELDS.len() => FIELDS[n].to_owned(),
                    _ => text(u),
                };
                map.insert(key, value(u, depth + 1));
            }
            Value::Object(map)
        }
    }
}

fn text(u: &mut Unstructured) -> String {
    match u.int_in_range(0..=4).unwrap_or(0) {
        0 => "passing".to_owned(),
        1 => "critical".to_owned(),
        2 => "80".to_owned(),
        3 => String::new(),
        _ => u.arbitrary().unwrap_or_default(),
    }
}

/// Answers shaped as Consul's: `/v1/catalog/service/web`, `/v1/health/service/web` and
/// `/v1/agent/services`.
fn realistic() -> Vec<Value> {
    let check = |id: &str, status: &str, service: &str| {
        json!({"Node": "web-1", "CheckID": id, "Name": id, "Status": status, "Notes": "", "Output": "",
               "ServiceID": service, "ServiceName": service, "ServiceTags": ["rails"], "Type": "ttl",
               "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {},
               "CreateIndex": 10, "ModifyIndex": 12})
    };
    let node = json!({"ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": "web-1",
                      "Address": "10.0.0.1", "Datacenter": "dc1",
                      "TaggedAddresses": {"lan": "10.0.0.1", "wan": "198.18.0.1"},
                      "Meta": {"env": "prod", "rack": "r2"}, "CreateIndex": 5, "ModifyIndex": 5});
    let service = json!({"ID": "web-1", "Service": "web", "Tags": ["rails", "v1"], "Address": "",
                         "Meta": {"version": "1.2"}, "Port": 8080,
                         "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false,
                         "CreateIndex": 10, "ModifyIndex": 10});
    vec![
        json!([{"ID": node["ID"], "Node": "web-1", "Address": "10.0.0.1", "Datacenter": "dc1",
                "TaggedAddresses": node["TaggedAddresses"], "NodeMeta": node["Meta"],
                "ServiceKind": "", "ServiceID": "web-1", "ServiceName": "web",
                "ServiceTags": ["rails", "v1"], "ServiceAddress": "", "ServiceWeights": {"Passing": 1, "Warning": 1},
                "ServiceMeta": {"version": "1.2"}, "ServicePort": 8080, "ServiceSocketPath": "",
                "ServiceEnableTagOverride": false, "ServiceProxy": {}, "ServiceConnect": {},
                "CreateIndex": 10, "ModifyIndex": 10},
               {"ID": "", "Node": "web-2", "Address": "10.0.0.2", "Datacenter": "dc1",
                "TaggedAddresses": null, "NodeMeta": {}, "ServiceKind": "", "ServiceID": "web-2",
                "ServiceName": "web", "ServiceTags": [], "ServiceAddress": "10.0.0.9",
                "ServiceWeights": {"Passing": 3, "Warning": 1}, "ServiceMeta": null, "ServicePort": 80,
                "ServiceSocketPath": "", "ServiceEnableTagOverride": true, "ServiceProxy": {},
                "ServiceConnect": {}, "CreateIndex": 11, "ModifyIndex": 11}]),
        json!([{"Node": node, "Service": service,
                "Checks": [check("serfHealth", "passing", ""), check("service:web-1", "critical", "web-1")]},
               {"Node": {"Node": "web-2", "Meta": {}}, "Service": {"ID": "web-2", "Service": "web", "Tags": [], "Port": 80},
                "Checks": []}]),
        json!({"web-1": {"ID": "web-1", "Service": "web", "Tags": ["rails"], "Meta": {"version": "1.2"},
                         "Port": 8080, "Address": "", "Weights": {"Passing": 1, "Warning": 1},
                         "EnableTagOverride": false, "Datacenter": "dc1"},
               "db": {"ID": "db", "Service": "db", "Tags": null, "Meta": {}, "Port": 5432,
                      "Address": "10.0.0.3", "Weights": {"Passing": 1, "Warning": 1},
                      "EnableTagOverride": false, "Datacenter": "dc1"}}),
    ]
}
