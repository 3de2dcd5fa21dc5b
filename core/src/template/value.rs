//! The values a template computes with: Go's `interface{}` as `encoding/json` and
//! consul-template's dependency types produce them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::format::format_float_v;

/// A template value.
///
/// Lists, maps and records are shared (`Arc`) so that `range` and variables copy pointers, not
/// data, as Go's slices and maps do.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// Go's `nil` (a missing map key, a JSON `null`, an absent result).
    #[default]
    Nil,
    /// A `bool`.
    Bool(bool),
    /// An `int` (Go's template constants and `len`, `add` of ints, …).
    Int(i64),
    /// A `uint64` (`parseUint`).
    Uint(u64),
    /// A `float64` (every JSON number, `parseFloat`).
    Float(f64),
    /// A `string`.
    String(String),
    /// A `[]interface{}`.
    List(Arc<Vec<Value>>),
    /// A `map[string]interface{}`; `BTreeMap` because Go's `range` and printing sort map keys.
    Map(Arc<BTreeMap<String, Value>>),
    /// A struct, such as consul-template's `HealthService`: fields in declaration order.
    Record(Arc<Record>),
    /// The per-render `scratch` object; its methods (`.Get`, `.Set`, …) act on the render's
    /// scratch storage, which this handle does not hold.
    Scratch,
}

/// A struct value: a Go type name (for messages) and its fields in declaration order.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The Go type name printed in messages, e.g. `*dependency.HealthService`.
    pub type_name: String,
    /// The fields, in declaration order (Go prints a struct's fields in this order).
    pub fields: Vec<(String, Value)>,
}

impl Record {
    /// The value of field `name`, if the record has one.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A list value.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    /// A map value.
    pub fn map(entries: BTreeMap<String, Value>) -> Value {
        Value::Map(Arc::new(entries))
    }

    /// A record value.
    pub fn record(type_name: &str, fields: Vec<(&str, Value)>) -> Value {
        let fields = fields.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        Value::Record(Arc::new(Record { type_name: type_name.to_string(), fields }))
    }

    /// Go's truth (`if`, `and`, `or`, `not`): false for nil, false, zero, and empty
    /// strings, lists and maps; structs are always true.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Uint(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Record(_) | Value::Scratch => true,
        }
    }

    /// The Go type this value stands for, as Go's messages print it.
    pub fn type_name(&self) -> &str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Uint(_) => "uint64",
            Value::Float(_) => "float64",
            Value::String(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Record(r) => &r.type_name,
            Value::Scratch => "*template.Scratch",
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Go's `fmt.Sprint` of this one value (`%v`).
    pub fn to_go_string(&self) -> String {
        let mut out = String::new();
        self.write_go(&mut out, true);
        out
    }

    /// Appends Go's `%v` of this value. `top` is false inside a list, map or struct.
    pub(super) fn write_go(&self, out: &mut String, top: bool) {
        match self {
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Uint(u) => out.push_str(&u.to_string()),
            Value::Float(f) => out.push_str(&format_float_v(*f)),
            Value::String(s) => out.push_str(s),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    item.write_go(out, false);
                }
                out.push(']');
            }
            Value::Map(entries) => {
                out.push_str("map[");
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_go(out, false);
                }
                out.push(']');
            }
            Value::Record(record) => {
                if record.type_name.starts_with('*') && top {
                    out.push('&');
                }
                out.push('{');
                for (i, (_, v)) in record.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_go(out, false);
                }
                out.push('}');
            }
            Value::Scratch => out.push_str("&{}"),
        }
    }
}

impl PartialEq for Value {
    /// Structural equality (tests; `in`/`contains` compare with Go's `==` in their own code).
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Nil, Value::Nil) | (Value::Scratch, Value::Scratch) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Uint(a), Value::Uint(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::List(a), Value::List(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => a == b,
            (Value::Record(a), Value::Record(b)) => a == b,
            _ => false,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}
