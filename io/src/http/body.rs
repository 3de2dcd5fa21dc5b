//! Request bodies as Consul decodes them: JSON objects whose keys match case-insensitively and
//! with or without underscores (`Node`, `node`, `NodeChecks`, `node_checks`), durations as Go
//! strings (`"15s"`) or integer nanoseconds. Unknown keys are ignored, as Consul's decoder does.

use std::time::Duration;

use serde_json::{Map, Value};

use super::HttpError;

/// A decoded JSON object.
#[derive(Debug, Clone, Default)]
pub struct Object {
    fields: Map<String, Value>,
}

/// Consul's refusal of a body it cannot decode.
pub fn decode_failed(reason: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(format!("Request decode failed: {reason}"))
}

impl Object {
    /// Decodes a body; an empty body is an empty object.
    pub fn parse(body: &[u8]) -> Result<Object, HttpError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Object::default());
        }
        match serde_json::from_slice::<Value>(body).map_err(decode_failed)? {
            Value::Object(fields) => Ok(Object { fields }),
            Value::Null => Ok(Object::default()),
            other => Err(decode_failed(format!("expected a JSON object, got {}", kind(&other)))),
        }
    }

    /// An object nested in a field.
    pub fn from_value(value: &Value, field: &str) -> Result<Object, HttpError> {
        match value {
            Value::Object(fields) => Ok(Object { fields: fields.clone() }),
            Value::Null => Ok(Object::default()),
            other => Err(decode_failed(format!("{field}: expected an object, got {}", kind(other)))),
        }
    }

    /// The field named `name` in any of Consul's spellings.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let wanted = normalize(name);
        self.fields
            .iter()
            .find(|(key, _)| normalize(key) == wanted)
            .map(|(_, value)| value)
            .filter(|v| !v.is_null())
    }

    /// Whether the field is present (even as `null`).
    pub fn has(&self, name: &str) -> bool {
        let wanted = normalize(name);
        self.fields.keys().any(|key| normalize(key) == wanted)
    }

    /// A string field (`""` when absent).
    pub fn string(&self, name: &str) -> Result<String, HttpError> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(decode_failed(format!("{name}: expected a string, got {}", kind(other)))),
        }
    }

    /// A list of strings (empty when absent).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, HttpError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(decode_failed(format!("{name}: expected strings, got {}", kind(other)))),
                })
                .collect(),
            Some(other) => Err(decode_failed(format!("{name}: expected a list, got {}", kind(other)))),
        }
    }
}

/// A JSON value as a duration: Go's syntax, or integer nanoseconds.
pub fn duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(text) => muster_core::duration::parse(text).map_err(|error| error.to_string()),
        Value::Number(number) => number.as_u64().map(Duration::from_nanos).ok_or_else(|| {
            format!("invalid duration {number}: expected a non-negative integer of nanoseconds")
        }),
        other => Err(format!("expected a duration, got {}", kind(other))),
    }
}

fn normalize(key: &str) -> String {
    key.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_in_any_of_consuls_spellings_and_durations_in_either_form() {
        let object =
            Object::parse(br#"{"node_checks": ["a"], "LOCKDELAY": "15s", "ttl": 30000000000}"#).unwrap();
        assert_eq!(object.strings("NodeChecks").unwrap(), ["a"]);
        assert_eq!(duration(object.get("LockDelay").unwrap()), Ok(Duration::from_secs(15)));
        assert_eq!(duration(object.get("TTL").unwrap()), Ok(Duration::from_secs(30)));
        assert!(object.has("nodechecks") && !object.has("Behavior"));
        assert_eq!(Object::parse(b"  ").unwrap().string("Name").unwrap(), "");
        let refused = Object::parse(b"[1]").unwrap_err();
        assert_eq!(refused.reason, "Request decode failed: expected a JSON object, got a list");
        assert!(Object::parse(b"{").unwrap_err().reason.starts_with("Request decode failed: EOF"));
        assert!(object.string("ttl").is_err(), "a number is not a string");
    }
}
