//! Configuration files as the agent reads them: arbitrary text through the HCL1 parser (or
//! serde_json), then the table of Consul's keys. Neither may panic; the check is deterministic;
//! and what the check accepts, it accepts again as it put it out (canonical names, moved
//! deprecated keys, unwrapped blocks are themselves a valid file).
//!
//! The modules are compiled in from `io/src/config/` by path: they need only serde_json and
//! the core, so the fuzz build does not compile the agent's whole dependency tree.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../io/src/config/hcl1.rs"]
#[allow(dead_code)]
mod hcl1;
#[path = "../../io/src/config/keys.rs"]
#[allow(dead_code)]
mod keys;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (parsed, origin) = match text.trim_start().starts_with('{') {
        true => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => (map, keys::Origin::Json),
            _ => return,
        },
        false => match hcl1::parse(text) {
            Ok(map) => (map, keys::Origin::Hcl),
            Err(error) => {
                assert!(error.to_string().starts_with("At "), "{error}");
                return;
            }
        },
    };
    let first = keys::check_from(parsed.clone(), origin);
    assert_eq!(first, keys::check_from(parsed, origin), "the check is deterministic");
    if let Ok(checked) = first {
        let again = keys::check_from(checked.config.clone(), keys::Origin::Json);
        assert!(again.is_ok(), "its own output refused: {:?} from {:?}", again, checked.config);
    }
});
