//! Query strings (io/src/http/query.rs, `Query::parse`) and the parameter parsers the endpoints
//! apply to them: `?wait=` (Go durations, `muster_core::duration::parse`), `?index=` and the
//! other integers (`Query::u64`), booleans (`Query::go_bool`), and conflicting flags.
//! Properties:
//! - nothing panics on any query string;
//! - `has`, `get` and `all` agree: a name is present iff it has a first value, which is the
//!   first of all its values;
//! - `encode_sorted` is a fixed point: parsing it gives a query with the same values per name,
//!   and encoding that again gives the same text;
//! - an integer read back is the text's number, and an error names the text as Go's does;
//! - a boolean is Go's `strconv.ParseBool`;
//! - a duration that parses prints (`duration::format`) as text that parses to it again.
//!
//! The query module is compiled in by path: it needs only form_urlencoded and thiserror.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::duration;

#[path = "../../io/src/http/query.rs"]
mod query;

use query::Query;

/// The parameters the endpoints read, so that mutations meet them.
const NAMES: [&str; 16] = [
    "wait",
    "index",
    "cas",
    "flags",
    "recurse",
    "keys",
    "separator",
    "passing",
    "tag",
    "filter",
    "stale",
    "consistent",
    "dc",
    "acquire",
    "release",
    "wan",
];

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let query = Query::parse(Some(raw));
    let names: Vec<String> = form_urlencoded::parse(raw.as_bytes())
        .map(|(name, _)| name.into_owned())
        .chain(NAMES.iter().map(|name| (*name).to_owned()))
        .collect();

    let encoded = query.encode_sorted();
    let again = Query::parse(Some(&encoded));
    assert_eq!(again.encode_sorted(), encoded, "encode_sorted is a fixed point");
    for name in &names {
        let values: Vec<&str> = query.all(name).collect();
        assert_eq!(query.has(name), !values.is_empty(), "{name}");
        assert_eq!(query.get(name), values.first().copied(), "{name}");
        assert_eq!(again.all(name).collect::<Vec<_>>(), values, "{name} survives encode_sorted");
        check_parameter(&query, name);
    }
    let flags: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
    let present = flags.iter().filter(|flag| query.has(flag)).count();
    assert_eq!(query.conflicting(&flags).is_some(), present > 1);
    assert!(Query::parse(None) == Query::default());
});

/// The readings of one parameter, as the endpoints take them.
fn check_parameter(query: &Query, name: &str) {
    let text = query.get(name);
    match query.u64(name) {
        Ok(None) => assert!(text.is_none()),
        Ok(Some(n)) => assert_eq!(text.and_then(|t| t.parse::<u64>().ok()), Some(n)),
        Err(reason) => {
            let text = text.expect("an error needs a value");
            assert!(text.parse::<u64>().is_err());
            assert_eq!(reason.to_string(), format!("strconv.ParseUint: parsing {text:?}: invalid syntax"));
        }
    }
    let go = |t: &str| match t {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    };
    assert_eq!(query.go_bool(name), text.map(go), "strconv.ParseBool");
    if let Some(text) = text {
        // `?wait=`: a duration, capped at the agent's maximum.
        if let Ok(wait) = duration::parse(text) {
            assert!(wait <= duration::GO_DURATION_MAX, "{text:?} beyond Go's range");
            let printed = duration::format(wait);
            assert_eq!(duration::parse(&printed), Ok(wait), "{text:?} printed as {printed:?}");
        }
    }
}
