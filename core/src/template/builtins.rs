//! Function signatures (for Go's argument checks) and Go's builtin functions
//! (`text/template/funcs.go`).

use super::exec::{Flow, State};
use super::format::{sprint, sprintf, sprintln};
use super::helpers;
use super::value::Value;

/// A parameter type, as far as Go's argument checking tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    /// `interface{}` or `reflect.Value`: anything.
    Any,
    /// `string`.
    String,
    /// `int`.
    Int,
    /// `bool`.
    Bool,
    /// `[]string`: a list whose elements are all strings.
    StringList,
    /// `[]interface{}`: any list.
    List,
}

impl Ty {
    pub(super) fn can_be_nil(self) -> bool {
        matches!(self, Ty::Any | Ty::StringList | Ty::List)
    }

    pub(super) fn go_name(self) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::String => "string",
            Ty::Int => "int",
            Ty::Bool => "bool",
            Ty::StringList => "[]string",
            Ty::List => "[]interface {}",
        }
    }

    /// The word in Go's "expected X; found Y" for a constant of the wrong kind.
    pub(super) fn expected_word(self) -> &'static str {
        match self {
            Ty::Int => "integer",
            other => other.go_name(),
        }
    }

    pub(super) fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (Ty::Any, _) => true,
            (Ty::String, Value::String(_)) => true,
            (Ty::Int, Value::Int(_)) => true,
            (Ty::Bool, Value::Bool(_)) => true,
            (Ty::List, Value::List(_)) => true,
            (Ty::StringList, Value::List(items)) => items.iter().all(|v| matches!(v, Value::String(_))),
            _ => false,
        }
    }
}

/// A function's parameters: fixed ones, then optionally a variadic tail.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sig {
    pub(super) params: &'static [Ty],
    pub(super) variadic: Option<Ty>,
}

const fn fixed(params: &'static [Ty]) -> Sig {
    Sig { params, variadic: None }
}

const fn variadic(params: &'static [Ty], tail: Ty) -> Sig {
    Sig { params, variadic: Some(tail) }
}

use Ty::{Any, Int, List, String as Str, StringList};

/// Why a function call failed: a message (reported as `error calling NAME: …`) or an
/// execution error from a nested template (reported as it is).
pub(super) enum CallError {
    Message(String),
    Flow(Flow),
}

impl From<String> for CallError {
    fn from(message: String) -> CallError {
        CallError::Message(message)
    }
}

impl From<&str> for CallError {
    fn from(message: &str) -> CallError {
        CallError::Message(message.to_string())
    }
}

pub(super) type CallResult = Result<Value, CallError>;

/// Whether `name` is one of Go's builtins.
pub(super) fn is_builtin(name: &str) -> bool {
    go_signature(name).is_some()
}

/// The signature of a function (Go builtin, consul-template helper, or `scratch.Method`).
pub(super) fn signature(name: &str) -> Option<Sig> {
    go_signature(name).or_else(|| helpers::signature(name))
}

fn go_signature(name: &str) -> Option<Sig> {
    Some(match name {
        "and" | "or" => variadic(&[Any], Any),
        "not" | "len" => fixed(&[Any]),
        "index" | "slice" | "eq" | "call" => variadic(&[Any], Any),
        "ne" | "lt" | "le" | "gt" | "ge" => fixed(&[Any, Any]),
        "print" | "println" | "html" | "js" | "urlquery" => variadic(&[], Any),
        "printf" => variadic(&[Str], Any),
        _ => return None,
    })
}

/// Calls a function with evaluated arguments.
pub(super) fn call(state: &mut State<'_>, name: &str, args: Vec<Value>) -> CallResult {
    match name {
        "not" => Ok(Value::Bool(!args[0].is_true())),
        "len" => length(&args[0]),
        "index" => index(&args[0], &args[1..]),
        "slice" => slice(&args[0], &args[1..]),
        "eq" => eq(&args[0], &args[1..]).map(Value::Bool),
        "ne" => eq(&args[0], &args[1..]).map(|b| Value::Bool(!b)),
        "lt" => lt(&args[0], &args[1]).map(Value::Bool),
        "le" => le(&args[0], &args[1]).map(Value::Bool),
        "gt" => le(&args[0], &args[1]).map(|b| Value::Bool(!b)),
        "ge" => lt(&args[0], &args[1]).map(|b| Value::Bool(!b)),
        "print" => Ok(Value::String(sprint(&args))),
        "println" => Ok(Value::String(sprintln(&args))),
        "printf" => {
            let format = args[0].as_str().unwrap_or_default().to_string();
            Ok(Value::String(sprintf(&format, &args[1..])))
        }
        "html" => Ok(Value::String(html_escape(&eval_args(&args)))),
        "js" => Ok(Value::String(js_escape(&eval_args(&args)))),
        "urlquery" => Ok(Value::String(query_escape(&eval_args(&args)))),
        "call" => match &args[0] {
            Value::Nil => Err("call of nil".into()),
            other => Err(format!("non-function of type {}", other.type_name()).into()),
        },
        _ => helpers::call(state, name, args),
    }
}

fn length(item: &Value) -> CallResult {
    let n = match item {
        Value::String(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        Value::Nil => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", other.type_name()).into()),
    };
    Ok(Value::Int(n as i64))
}

/// Go's `indexArg`: an integer index below `cap`.
fn index_arg(index: &Value, cap: usize) -> Result<usize, CallError> {
    let x: i128 = match index {
        Value::Int(i) => i128::from(*i),
        Value::Uint(u) => i128::from(*u),
        Value::Nil => return Err("cannot index slice/array with nil".into()),
        other => return Err(format!("cannot index slice/array with type {}", other.type_name()).into()),
    };
    if x < 0 || x > cap as i128 {
        return Err(format!("index out of range: {x}").into());
    }
    Ok(x as usize)
}

fn index(item: &Value, indexes: &[Value]) -> CallResult {
    if let Value::Nil = item {
        return Err("index of untyped nil".into());
    }
    let mut item = item.clone();
    for index in indexes {
        item = match &item {
            Value::List(l) => {
                let x = index_arg(index, l.len())?;
                // Go checks the index against the capacity; reflect panics past the length.
                l.get(x).cloned().ok_or_else(|| CallError::from("reflect: slice index out of range"))?
            }
            Value::String(s) => {
                let x = index_arg(index, s.len())?;
                Value::Int(i64::from(
                    *s.as_bytes()
                        .get(x)
                        .ok_or_else(|| CallError::from("reflect: string index out of range"))?,
                ))
            }
            Value::Map(m) => match index {
                Value::String(k) => m.get(k).cloned().unwrap_or(Value::Nil),
                Value::Nil => return Err("value is nil; should be of type string".into()),
                other => return Err(format!("value has type {}; should be string", other.type_name()).into()),
            },
            Value::Nil => return Err("index of nil pointer".into()),
            other => return Err(format!("can't index item of type {}", other.type_name()).into()),
        };
    }
    Ok(item)
}

fn slice(item: &Value, indexes: &[Value]) -> CallResult {
    if let Value::Nil = item {
        return Err("slice of untyped nil".into());
    }
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()).into());
    }
    let len = match item {
        Value::String(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        Value::List(l) => l.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name()).into()),
    };
    let mut idx = [0, len, len];
    for (i, index) in indexes.iter().enumerate() {
        idx[i] = index_arg(index, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]).into());
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]).into());
    }
    Ok(match item {
        Value::String(s) => match s.get(idx[0]..idx[1]) {
            Some(sub) => Value::String(sub.to_string()),
            // Go slices bytes; a cut inside a UTF-8 sequence keeps the raw bytes.
            None => Value::String(String::from_utf8_lossy(&s.as_bytes()[idx[0]..idx[1]]).into_owned()),
        },
        Value::List(l) => Value::list(l[idx[0]..idx[1]].to_vec()),
        _ => Value::Nil,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Uint,
    Float,
    String,
}

fn basic_kind(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Uint(_) => Kind::Uint,
        Value::Float(_) => Kind::Float,
        Value::String(_) => Kind::String,
        _ => Kind::Invalid,
    }
}

const BAD_COMPARISON_TYPE: &str = "invalid type for comparison";
const BAD_COMPARISON: &str = "incompatible types for comparison";

fn eq(arg1: &Value, others: &[Value]) -> Result<bool, CallError> {
    if others.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(arg1);
    for arg in others {
        let k2 = basic_kind(arg);
        let truth = if k1 != k2 {
            match (arg1, arg) {
                (Value::Int(a), Value::Uint(b)) | (Value::Uint(b), Value::Int(a)) => {
                    *a >= 0 && *a as u64 == *b
                }
                (Value::Nil, _) | (_, Value::Nil) => false,
                _ => return Err(BAD_COMPARISON.into()),
            }
        } else {
            match (arg1, arg) {
                (Value::Bool(a), Value::Bool(b)) => a == b,
                (Value::Int(a), Value::Int(b)) => a == b,
                (Value::Uint(a), Value::Uint(b)) => a == b,
                (Value::Float(a), Value::Float(b)) => a == b,
                (Value::String(a), Value::String(b)) => a == b,
                (Value::Nil, _) | (_, Value::Nil) => matches!(arg1, Value::Nil) == matches!(arg, Value::Nil),
                (Value::Record(a), Value::Record(b)) if a.type_name == b.type_name => a == b,
                (Value::List(_) | Value::Map(_), _) | (_, Value::List(_) | Value::Map(_)) => {
                    if std::mem::discriminant(arg1) != std::mem::discriminant(arg) {
                        return Err(format!(
                            "non-comparable types {}: {}, {}: {}",
                            percent_s(arg1),
                            arg1.type_name(),
                            arg.type_name(),
                            arg.to_go_string()
                        )
                        .into());
                    }
                    return Err(format!("non-comparable type {}: {}", percent_s(arg), arg.type_name()).into());
                }
                _ => false,
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Go's `%s` of a value (numbers inside become `%!s(float64=3)`).
fn percent_s(v: &Value) -> String {
    sprintf("%s", std::slice::from_ref(v))
}

fn lt(arg1: &Value, arg2: &Value) -> Result<bool, CallError> {
    let (k1, k2) = (basic_kind(arg1), basic_kind(arg2));
    if k1 == Kind::Invalid || k2 == Kind::Invalid {
        return Err(BAD_COMPARISON_TYPE.into());
    }
    Ok(match (arg1, arg2) {
        (Value::Int(a), Value::Uint(b)) => *a < 0 || (*a as u64) < *b,
        (Value::Uint(a), Value::Int(b)) => *b >= 0 && *a < *b as u64,
        (Value::Int(a), Value::Int(b)) => a < b,
        (Value::Uint(a), Value::Uint(b)) => a < b,
        (Value::Float(a), Value::Float(b)) => a < b,
        (Value::String(a), Value::String(b)) => a < b,
        (Value::Bool(_), Value::Bool(_)) => return Err(BAD_COMPARISON_TYPE.into()),
        _ => return Err(BAD_COMPARISON.into()),
    })
}

fn le(arg1: &Value, arg2: &Value) -> Result<bool, CallError> {
    if lt(arg1, arg2)? {
        return Ok(true);
    }
    eq(arg1, std::slice::from_ref(arg2))
}

/// Go's `evalArgs` for `html`, `js` and `urlquery`: one string as it is, anything else
/// printed with `fmt.Sprint` (a nil as `<no value>`).
fn eval_args(args: &[Value]) -> String {
    if let [Value::String(s)] = args {
        return s.clone();
    }
    let printable: Vec<Value> = args
        .iter()
        .map(|a| match a {
            Value::Nil => Value::String("<no value>".into()),
            other => other.clone(),
        })
        .collect();
    sprint(&printable)
}

/// Go's `template.HTMLEscapeString`.
pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString` (Go 1.19).
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u00{:02X}", c as u32)),
            c if (c as u32) < 0x80 => out.push(c),
            c if !c.is_control() && !is_go_unprintable(c) => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", c as u32)),
        }
    }
    out
}

/// Characters Go's `unicode.IsPrint` rejects beyond the controls: the format and separator
/// characters templates are likely to meet.
fn is_go_unprintable(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
        || (c.is_whitespace() && c != ' ')
}

/// Go's `url.QueryEscape`.
pub(super) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// Silences "unused" for the list-typed parameters only helpers use.
const _: [Ty; 3] = [Int, List, StringList];
