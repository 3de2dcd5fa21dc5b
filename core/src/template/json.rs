//! `toJSON`/`toJSONPretty` as Go's `encoding/json` writes an `interface{}` (map keys sorted,
//! `<`, `>` and `&` escaped unless asked not to, Go's float format), and `parseJSON`.

use std::collections::BTreeMap;

use super::builtins::CallError;
use super::format::{decimal_digits, fmt_e, fmt_f};
use super::value::Value;

/// Go's `json.Marshal` (or `MarshalIndent(v, "", "  ")` when `pretty`), trimmed.
pub(super) fn encode(value: &Value, escape_html: bool, pretty: bool) -> Result<String, CallError> {
    let mut out = String::new();
    let mut encoder = Encoder { out: &mut out, escape_html, pretty, depth: 0 };
    encoder.value(value)?;
    Ok(out.trim().to_string())
}

/// The deepest nesting `toJSON` follows (Go's encoder stops cycles at 1000 levels; values here
/// cannot be cyclic, but `explode` of hostile keys can nest deeply).
const JSON_DEPTH_MAX: usize = 1000;

struct Encoder<'a> {
    out: &'a mut String,
    escape_html: bool,
    pretty: bool,
    depth: usize,
}

impl Encoder<'_> {
    fn value(&mut self, value: &Value) -> Result<(), CallError> {
        match value {
            Value::Nil | Value::Scratch => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => self.out.push_str(&i.to_string()),
            Value::Uint(u) => self.out.push_str(&u.to_string()),
            Value::Float(f) => self.out.push_str(&float(*f)?),
            Value::String(s) => self.string(s),
            Value::List(items) => {
                self.enter()?;
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separator(i);
                    self.value(item)?;
                }
                self.close(items.is_empty(), ']');
            }
            Value::Map(entries) => {
                let fields: Vec<(&str, &Value)> = entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
                self.object(&fields)?;
            }
            Value::Record(record) => {
                let fields: Vec<(&str, &Value)> =
                    record.fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
                self.object(&fields)?;
            }
        }
        Ok(())
    }

    fn object(&mut self, fields: &[(&str, &Value)]) -> Result<(), CallError> {
        self.enter()?;
        self.out.push('{');
        for (i, (k, v)) in fields.iter().enumerate() {
            self.separator(i);
            self.string(k);
            self.out.push(':');
            if self.pretty {
                self.out.push(' ');
            }
            self.value(v)?;
        }
        self.close(fields.is_empty(), '}');
        Ok(())
    }

    fn enter(&mut self) -> Result<(), CallError> {
        self.depth += 1;
        if self.depth > JSON_DEPTH_MAX {
            return Err(format!("json: nesting deeper than {JSON_DEPTH_MAX}").into());
        }
        Ok(())
    }

    fn separator(&mut self, i: usize) {
        if i > 0 {
            self.out.push(',');
        }
        self.newline(self.depth);
    }

    fn close(&mut self, empty: bool, bracket: char) {
        self.depth -= 1;
        if !empty {
            self.newline(self.depth);
        }
        self.out.push(bracket);
    }

    fn newline(&mut self, depth: usize) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str("  ");
            }
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '<' | '>' | '&' if self.escape_html => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                '\u{2028}' | '\u{2029}' => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// Go's `encoding/json` float format: shortest `%f`, or `%e` outside [1e-6, 1e21).
fn float(f: f64) -> Result<String, CallError> {
    if !f.is_finite() {
        return Err(format!("json: unsupported value: {}", super::format::format_float_v(f)).into());
    }
    let abs = f.abs();
    let sign = if f.is_sign_negative() && f != 0.0 { "-" } else { "" };
    let (digits, dp) = decimal_digits(abs, None);
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = fmt_e(&digits, dp, digits.len().saturating_sub(1), 'e');
        // Go cleans `e-07` up to `e-7`.
        let text = match text.rfind("e-0") {
            Some(i) if i + 4 == text.len() => format!("{}e-{}", &text[..i], &text[i + 3..]),
            _ => text,
        };
        return Ok(format!("{sign}{text}"));
    }
    let frac = (digits.len() as i64 - dp).max(0) as usize;
    Ok(format!("{sign}{}", fmt_f(&digits, dp, frac)))
}

/// `parseJSON`: `""` is an empty map; numbers become float64, as Go's `interface{}` decoding.
pub(super) fn parse(text: &str) -> Result<Value, CallError> {
    if text.is_empty() {
        return Ok(Value::map(BTreeMap::new()));
    }
    let parsed: serde_json::Value =
        serde_json::from_str(text).map_err(|e| CallError::Message(format!("parseJSON: {e}")))?;
    Ok(from_json(&parsed))
}

/// Converts a JSON document into a value (numbers to float64, as Go does).
pub(super) fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::list(items.iter().map(from_json).collect()),
        serde_json::Value::Object(entries) => {
            Value::map(entries.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}
