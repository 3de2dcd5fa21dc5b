//! consul-template's functions (`template/funcs.go`, `template/scratch.go`): the query
//! functions, which go through the [`Source`](super::Source), and the pure helpers. Piped
//! values arrive as the last argument, as in consul-template.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::builtins::{CallError, CallResult, Sig, Ty};
use super::exec::{Flow, State};
use super::json;
use super::value::Value;
use super::{
    Dependency, DependencyError, FileWrite, LOOP_LENGTH_MAX, PAD_MAX, RESULT_BYTES_MAX, VALUE_DEPTH_MAX,
};

use Ty::{Any, Bool, Int, List, String as Str, StringList};

/// Whether `name` is a consul-template function.
pub(super) fn is_helper(name: &str) -> bool {
    !name.starts_with("scratch.") && signature(name).is_some()
}

/// The signature of a helper, or of a scratch method (`scratch.Get`).
pub(super) fn signature(name: &str) -> Option<Sig> {
    let (params, variadic): (&'static [Ty], Option<Ty>) = match name {
        // Query functions.
        "service" | "connect" | "services" | "node" | "nodes" => (&[], Some(Str)),
        "key" | "keyExists" | "ls" | "safeLs" | "tree" | "safeTree" | "file" => (&[Str], None),
        "keyOrDefault" => (&[Str, Str], None),
        "datacenters" => (&[], Some(Bool)),
        "env" | "mustEnv" => (&[Str], None),
        "envOrDefault" => (&[Str, Str], None),
        "writeToFile" => (&[Str, Str, Str, Str], Some(Str)),
        "plugin" => (&[Str], Some(Str)),
        "executeTemplate" => (&[Str], Some(Any)),
        "scratch" => (&[], None),
        // Pure helpers.
        "contains" => (&[Any, Any], None),
        "in" => (&[Any, Any], None),
        "containsAll" | "containsAny" | "containsNone" | "containsNotAll" => (&[List, Any], None),
        "join" => (&[Str, StringList], None),
        "split" => (&[Str, Str], None),
        "splitToMap" => (&[Str, Str, Str], None),
        "mergeMap" | "mergeMapWithOverride" => (&[Any, Any], None),
        "replaceAll" => (&[Str, Str, Str], None),
        "regexMatch" => (&[Str, Str], None),
        "regexReplaceAll" => (&[Str, Str, Str], None),
        "toLower" | "toUpper" | "toTitle" | "trimSpace" => (&[Str], None),
        "trim" | "trimPrefix" | "trimSuffix" => (&[Str, Str], None),
        "toJSON" | "toJSONPretty" | "toUnescapedJSON" | "toUnescapedJSONPretty" => (&[Any], None),
        "parseJSON" | "parseInt" | "parseUint" | "parseFloat" | "parseBool" => (&[Str], None),
        "base64Encode" | "base64Decode" | "base64URLEncode" | "base64URLDecode" | "sha256Hex" => {
            (&[Str], None)
        }
        "byTag" | "byKey" | "explode" | "explodeMap" => (&[Any], None),
        "byMeta" => (&[Str, Any], None),
        "indent" => (&[Int, Str], None),
        "timestamp" => (&[], Some(Str)),
        "add" | "subtract" | "multiply" | "divide" | "modulo" | "minimum" | "maximum" => (&[Any, Any], None),
        "loop" => (&[], Some(Any)),
        "scratch.Key" | "scratch.Get" | "scratch.MapValues" => (&[Str], None),
        "scratch.Set" | "scratch.SetX" => (&[Str, Any], None),
        "scratch.MapSet" | "scratch.MapSetX" => (&[Str, Str, Any], None),
        _ => return None,
    };
    Some(Sig { params, variadic })
}

/// consul-template's `errors.Wrap(err, name)`.
fn wrap(name: &str, e: CallError) -> CallError {
    match e {
        CallError::Message(m) => CallError::Message(format!("{name}: {m}")),
        other => other,
    }
}

fn string_arg(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn dependency_error(e: DependencyError) -> CallError {
    CallError::Message(e.to_string())
}

/// Calls a consul-template function.
pub(super) fn call(state: &mut State<'_>, name: &str, args: Vec<Value>) -> CallResult {
    if let Some(result) = call_query(state, name, &args) {
        return result;
    }
    if let Some(rest) = name.strip_prefix("scratch.") {
        return call_scratch(state, rest, &args);
    }
    let s = |i: usize| string_arg(&args[i]);
    Ok(match name {
        "contains" => Value::Bool(in_list(&args[1], &args[0])),
        "in" => Value::Bool(in_list(&args[0], &args[1])),
        "containsAll" => Value::Bool(contains_some(&args[0], &args[1], true, true)),
        "containsAny" => Value::Bool(contains_some(&args[0], &args[1], false, false)),
        "containsNone" => Value::Bool(contains_some(&args[0], &args[1], true, false)),
        "containsNotAll" => Value::Bool(contains_some(&args[0], &args[1], false, true)),
        "join" => {
            let parts: Vec<String> = list_items(&args[1]).iter().map(string_arg).collect();
            let size = parts.iter().map(String::len).sum::<usize>() + parts.len() * s(0).len();
            check_size("join", size)?;
            Value::String(parts.join(&s(0)))
        }
        "split" => split(&s(0), &s(1))?,
        "replaceAll" => {
            let (from, to, text) = (s(0), s(1), s(2));
            let matches =
                if from.is_empty() { text.chars().count() + 1 } else { text.matches(from.as_str()).count() };
            check_size("replaceAll", text.len() + matches * to.len())?;
            Value::String(text.replace(&from, &to))
        }
        "regexMatch" => Value::Bool(compile(&s(0))?.is_match(&s(1))),
        "regexReplaceAll" => regex_replace_all(&compile(&s(0))?, &s(1), &s(2))?,
        "toLower" => Value::String(s(0).to_lowercase()),
        "toUpper" => Value::String(s(0).to_uppercase()),
        "toTitle" => Value::String(to_title(&s(0))),
        "trimSpace" => Value::String(s(0).trim_matches(is_go_space).to_string()),
        "trim" => Value::String(s(1).trim_matches(|c| s(0).contains(c)).to_string()),
        "trimPrefix" => Value::String(s(1).strip_prefix(s(0).as_str()).map_or(s(1), str::to_string)),
        "trimSuffix" => Value::String(s(1).strip_suffix(s(0).as_str()).map_or(s(1), str::to_string)),
        "toJSON" => Value::String(json::encode(&args[0], true, false).map_err(|e| wrap("toJSON", e))?),
        "toJSONPretty" => Value::String(json::encode(&args[0], true, true)?),
        "toUnescapedJSON" => Value::String(json::encode(&args[0], false, false)?),
        "toUnescapedJSONPretty" => Value::String(json::encode(&args[0], false, true)?),
        "parseJSON" => json::parse(&s(0))?,
        "parseInt" => parse_number(name, &s(0))?,
        "parseUint" => parse_number(name, &s(0))?,
        "parseFloat" => parse_number(name, &s(0))?,
        "parseBool" => parse_bool(&s(0))?,
        "base64Encode" => Value::String(base64_encode(s(0).as_bytes(), STD_ALPHABET)),
        "base64URLEncode" => Value::String(base64_encode(s(0).as_bytes(), URL_ALPHABET)),
        "base64Decode" => {
            Value::String(base64_decode(&s(0), STD_ALPHABET).map_err(|e| format!("base64Decode: {e}"))?)
        }
        "base64URLDecode" => {
            Value::String(base64_decode(&s(0), URL_ALPHABET).map_err(|e| format!("base64URLDecode: {e}"))?)
        }
        "sha256Hex" => {
            Value::String(Sha256::digest(s(0).as_bytes()).iter().map(|b| format!("{b:02x}")).collect())
        }
        "byTag" => by_tag(&args[0])?,
        "byKey" => by_key(&args[0])?,
        "byMeta" => by_meta(&s(0), &args[1])?,
        "explode" => explode(&args[0])?,
        "explodeMap" => explode_map(&args[0])?,
        "indent" => indent(&args[0], &s(1))?,
        "timestamp" if args.len() > 1 => {
            return Err(format!(
                "timestamp: wrong number of arguments, expected 0 or 1, but got {}",
                args.len()
            )
            .into())
        }
        "timestamp" => timestamp(state.options.now_unix_nanos, args.first().map(string_arg))?,
        "splitToMap" => split_to_map(&s(0), &s(1), &s(2)),
        "mergeMap" => merge_map(&args[0], &args[1], false)?,
        "mergeMapWithOverride" => merge_map(&args[0], &args[1], true)?,
        "add" | "subtract" | "multiply" | "divide" | "modulo" | "minimum" | "maximum" => {
            arithmetic(name, &args[1], &args[0])?
        }
        "loop" => loop_values(&args)?,
        _ => return Err(format!("function {name} is not implemented").into()),
    })
}

/// The functions that read the source or the template (`key`, `env`, `executeTemplate`, …).
fn call_query(state: &mut State<'_>, name: &str, args: &[Value]) -> Option<CallResult> {
    let s = |i: usize| args.get(i).map(string_arg).unwrap_or_default();
    let result = match name {
        "service" | "connect" => query_service(state, name == "connect", args),
        // Unlike `service`, these join their arguments with nothing.
        "services" => query_list(state, Dependency::parse_services(&concat_args(args))),
        "nodes" => query_list(state, Dependency::parse_nodes(&concat_args(args))),
        "node" => match Dependency::parse_node(&concat_args(args)) {
            Ok(dep) => Ok(state.query(dep).unwrap_or(Value::Nil)),
            Err(e) => Err(dependency_error(e)),
        },
        "key" => query_key(state, &s(0), None),
        "keyOrDefault" => query_key(state, &s(0), Some(s(1))),
        // consul-template asks the same (non-blocking) KV get as `keyOrDefault`.
        "keyExists" if s(0).is_empty() => Ok(Value::Bool(false)),
        "keyExists" => match Dependency::parse_key(&s(0)) {
            Ok(dep) => Ok(Value::Bool(state.query(dep).is_some_and(|v| !matches!(v, Value::Nil)))),
            Err(e) => Err(dependency_error(e)),
        },
        "ls" | "safeLs" | "tree" | "safeTree" => query_prefix(state, name, &s(0)),
        "datacenters" if args.len() > 1 => {
            Err(format!("datacenters: wrong number of arguments, expected 0 or 1, but got {}", args.len())
                .into())
        }
        "datacenters" => {
            let ignore_failing = matches!(args.first(), Some(Value::Bool(true)));
            Ok(state
                .query(Dependency::Datacenters { ignore_failing })
                .unwrap_or_else(|| Value::list(Vec::new())))
        }
        "file" if s(0).is_empty() => Ok(Value::String(String::new())),
        "file" => {
            Ok(state.query(Dependency::File { path: s(0) }).unwrap_or_else(|| Value::String(String::new())))
        }
        "env" => Ok(Value::String(state.source.env(&s(0)).unwrap_or_default())),
        "mustEnv" => match state.source.env(&s(0)).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Value::String(v)),
            None => Err(format!("required environment variable {} is empty", s(0)).into()),
        },
        // A variable that is set, even to "", wins over the default.
        "envOrDefault" => Ok(Value::String(state.source.env(&s(0)).unwrap_or_else(|| s(1)))),
        "writeToFile" => write_to_file(state, args),
        "plugin" if s(0).is_empty() => Ok(Value::String(String::new())),
        "plugin" => {
            let rest: Vec<String> = args[1..]
                .iter()
                .map(|a| string_arg(a).trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
            match state.source.plugin(&s(0), &rest) {
                Ok(out) => Ok(Value::String(out.trim().to_string())),
                Err(e) => Err(format!("exec {}: {e}", crate::go_quote::quote(&s(0))).into()),
            }
        }
        "executeTemplate" => execute_template(state, &s(0), &args[1..]),
        "scratch" => Ok(Value::Scratch),
        _ => return None,
    };
    Some(result)
}

/// `service` and `connect` join their separate arguments with `|` (name, then filter).
fn join_args(args: &[Value]) -> String {
    args.iter().map(string_arg).collect::<Vec<_>>().join("|")
}

/// `services`, `node` and `nodes` join their arguments with nothing.
fn concat_args(args: &[Value]) -> String {
    args.iter().map(string_arg).collect()
}

fn query_service(state: &mut State<'_>, connect: bool, args: &[Value]) -> CallResult {
    if args.is_empty() || string_arg(&args[0]).is_empty() {
        return Ok(Value::list(Vec::new()));
    }
    let dep = Dependency::parse_service(&join_args(args), connect).map_err(dependency_error)?;
    Ok(state.query(dep).unwrap_or_else(|| Value::list(Vec::new())))
}

fn query_list(state: &mut State<'_>, dep: Result<Dependency, DependencyError>) -> CallResult {
    let dep = dep.map_err(dependency_error)?;
    Ok(state.query(dep).unwrap_or_else(|| Value::list(Vec::new())))
}

fn query_key(state: &mut State<'_>, text: &str, default: Option<String>) -> CallResult {
    if text.is_empty() {
        return Ok(Value::String(default.unwrap_or_default()));
    }
    let dep = Dependency::parse_key(text).map_err(dependency_error)?;
    let answer = state.query(dep.clone());
    Ok(match (answer, default) {
        (Some(Value::String(v)), Some(d)) if v.is_empty() => Value::String(d),
        (Some(Value::String(v)), _) => Value::String(v),
        (Some(_), Some(d)) | (None, Some(d)) => Value::String(d),
        // `key` blocks until the key exists: an absent key holds the render back.
        (Some(_), None) => {
            state.mark_missing(dep);
            Value::String(String::new())
        }
        (None, None) => Value::String(String::new()),
    })
}

fn query_prefix(state: &mut State<'_>, name: &str, text: &str) -> CallResult {
    if text.is_empty() {
        return Ok(Value::list(Vec::new()));
    }
    let dep = Dependency::parse_key_prefix(text).map_err(dependency_error)?;
    let Some(pairs) = state.query(dep.clone()) else {
        return Ok(Value::list(Vec::new()));
    };
    let top_level = name == "ls" || name == "safeLs";
    let kept: Vec<Value> = list_items(&pairs)
        .into_iter()
        .filter(|pair| {
            let key = field(pair, "Key").and_then(|k| k.as_str().map(str::to_string)).unwrap_or_default();
            if top_level {
                !key.is_empty() && !key.contains('/')
            } else {
                !key.is_empty() && !key.ends_with('/')
            }
        })
        .collect();
    if kept.is_empty() && name.starts_with("safe") {
        state.mark_missing(dep);
    }
    Ok(Value::list(kept))
}

fn write_to_file(state: &mut State<'_>, args: &[Value]) -> CallResult {
    let s = |i: usize| args.get(i).map(string_arg).unwrap_or_default();
    let (flags, content) = match args.len() {
        5 => (String::new(), s(4)),
        6 => (s(4), s(5)),
        n => {
            return Err(format!("writeToFile: wrong number of arguments, expected 5 or 6, but got {n}").into())
        }
    };
    let write = FileWrite {
        path: s(0),
        user: s(1),
        group: s(2),
        perms: s(3),
        append: flags.contains("append"),
        newline: flags.contains("newline"),
        content,
    };
    state.source.write_file(&write).map_err(CallError::Message)?;
    Ok(Value::String(String::new()))
}

fn execute_template(state: &mut State<'_>, name: &str, data: &[Value]) -> CallResult {
    let dot = match data {
        [] => Value::Nil,
        [d] => d.clone(),
        _ => {
            return Err(format!(
                "executeTemplate: wrong number of arguments, expected 1 or 2, but got {}",
                data.len() + 1
            )
            .into())
        }
    };
    if !state.template.trees.contains_key(name) {
        return Err(format!(
            "template: no template {} associated with template {}",
            crate::go_quote::quote(name),
            crate::go_quote::quote(&state.template.name)
        )
        .into());
    }
    let saved = std::mem::take(&mut state.out);
    let result = state.call_template(name, &dot);
    let produced = std::mem::replace(&mut state.out, saved);
    match result {
        Ok(()) => Ok(Value::String(produced)),
        Err(Flow::Error(e)) => Err(CallError::Message(e.message().to_string())),
        Err(other) => Err(CallError::Flow(other)),
    }
}

fn call_scratch(state: &mut State<'_>, method: &str, args: &[Value]) -> CallResult {
    let key = string_arg(&args[0]);
    let scratch = &mut state.scratch;
    Ok(match method {
        "Key" => Value::Bool(scratch.contains_key(&key)),
        "Get" => scratch.get(&key).cloned().unwrap_or(Value::Nil),
        "Set" => {
            scratch.insert(key, args[1].clone());
            Value::String(String::new())
        }
        "SetX" => {
            scratch.entry(key).or_insert_with(|| args[1].clone());
            Value::String(String::new())
        }
        "MapSet" | "MapSetX" => {
            let map_key = string_arg(&args[1]);
            let mut map = match scratch.get(&key) {
                None => BTreeMap::new(),
                Some(Value::Map(m)) => (**m).clone(),
                Some(other) => {
                    return Err(format!("scratch: {key} is not a map (it is a {})", other.type_name()).into());
                }
            };
            if method == "MapSet" || !map.contains_key(&map_key) {
                map.insert(map_key, args[2].clone());
            }
            scratch.insert(key, Value::map(map));
            Value::String(String::new())
        }
        "MapValues" => match scratch.get(&key) {
            None => Value::Nil,
            Some(Value::Map(m)) => Value::list(m.values().cloned().collect()),
            Some(other) => {
                return Err(format!("scratch: {key} is not a map (it is a {})", other.type_name()).into())
            }
        },
        _ => return Err(format!("scratch has no method {method}").into()),
    })
}

/// A field of a record, or an entry of a map.
pub(super) fn field(v: &Value, name: &str) -> Option<Value> {
    match v {
        Value::Record(r) => r.field(name).cloned(),
        Value::Map(m) => m.get(name).cloned(),
        _ => None,
    }
}

fn list_items(v: &Value) -> Vec<Value> {
    match v {
        Value::List(l) => l.as_ref().clone(),
        _ => Vec::new(),
    }
}

/// consul-template's `in`: list membership by kind (int, float, string), or substring.
fn in_list(list: &Value, v: &Value) -> bool {
    match list {
        Value::List(items) => items.iter().any(|item| match (item, v) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            _ => false,
        }),
        Value::String(s) => matches!(v, Value::String(sub) if s.contains(sub.as_str())),
        _ => false,
    }
}

/// consul-template's `containsSomeFunc(retTrue, invert)`.
fn contains_some(values: &Value, list: &Value, ret_true: bool, invert: bool) -> bool {
    for v in list_items(values) {
        if in_list(list, &v) != invert {
            return !ret_true;
        }
    }
    ret_true
}

fn split(sep: &str, s: &str) -> CallResult {
    let s = s.trim_matches(is_go_space);
    if s.is_empty() {
        return Ok(Value::list(Vec::new()));
    }
    let count = if sep.is_empty() { s.chars().count() } else { s.matches(sep).count() + 1 };
    if count as i64 > LOOP_LENGTH_MAX {
        return Err(format!("split: {count} parts is over the limit of {LOOP_LENGTH_MAX}").into());
    }
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep).map(Value::from).collect()
    };
    Ok(Value::list(parts))
}

/// Refuses a result over [`RESULT_BYTES_MAX`] before building it.
fn check_size(name: &str, size: usize) -> Result<(), CallError> {
    if size > RESULT_BYTES_MAX {
        return Err(format!("{name}: result of {size} bytes is over the limit of {RESULT_BYTES_MAX}").into());
    }
    Ok(())
}

/// Go's `ReplaceAllString` (`$1`, `${name}` expansion), with the result size checked as it grows.
fn regex_replace_all(re: &regex::Regex, replacement: &str, text: &str) -> CallResult {
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&text[last..whole.start()]);
        caps.expand(replacement, &mut out);
        last = whole.end();
        check_size("regexReplaceAll", out.len() + text.len() - last)?;
    }
    out.push_str(&text[last..]);
    Ok(Value::String(out))
}

/// `splitToMap sep1 sep2 s`: pairs without `sep2` are skipped.
fn split_to_map(sep1: &str, sep2: &str, s: &str) -> Value {
    let s = s.trim_matches(is_go_space);
    let mut map = BTreeMap::new();
    if s.is_empty() || sep1.is_empty() || sep2.is_empty() {
        return Value::map(map);
    }
    for item in s.split(sep1) {
        if let Some((k, v)) = item.split_once(sep2) {
            map.insert(k.to_string(), Value::from(v));
        }
    }
    Value::map(map)
}

/// `mergeMap dst src` (mergo.Map): keys of `src` that `dst` lacks are added, nested maps merge;
/// with override, `src` wins on conflicts.
fn merge_map(dst: &Value, src: &Value, override_dst: bool) -> CallResult {
    let (Value::Map(d), Value::Map(s)) = (dst, src) else {
        let bad = if matches!(dst, Value::Map(_)) { src } else { dst };
        return Err(format!(
            "wrong type for value; expected map[string]interface {{}}; got {}",
            bad.type_name()
        )
        .into());
    };
    let mut merged = (**d).clone();
    for (k, v) in s.iter() {
        match merged.get(k) {
            Some(existing @ Value::Map(_)) if matches!(v, Value::Map(_)) => {
                let nested = merge_map(existing, v, override_dst)?;
                merged.insert(k.clone(), nested);
            }
            Some(_) if !override_dst => {}
            _ => {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::map(merged))
}

fn is_go_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{85}' || c == '\u{A0}'
}

fn compile(re: &str) -> Result<regex::Regex, CallError> {
    regex::Regex::new(re).map_err(|e| CallError::Message(format!("error parsing regexp: {e}")))
}

/// Go's `strings.Title`: upper-cases the first letter of each word, leaves the rest.
fn to_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_separator = true;
    for c in s.chars() {
        if prev_separator {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_separator = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !(c.is_alphanumeric()) && c.is_whitespace()
        };
    }
    out
}

fn parse_number(name: &str, s: &str) -> CallResult {
    if s.is_empty() {
        return Ok(match name {
            "parseUint" => Value::Uint(0),
            "parseFloat" => Value::Float(0.0),
            _ => Value::Int(0),
        });
    }
    let quoted = crate::go_quote::quote(s);
    let invalid = |func: &str| format!("{name}: strconv.{func}: parsing {quoted}: invalid syntax");
    Ok(match name {
        "parseUint" => Value::Uint(s.parse::<u64>().map_err(|_| invalid("ParseUint"))?),
        "parseFloat" => Value::Float(
            super::parse::parse_go_float(s)
                .or_else(|| s.parse::<f64>().ok())
                .ok_or_else(|| invalid("ParseFloat"))?,
        ),
        _ => Value::Int(s.parse::<i64>().map_err(|_| invalid("ParseInt"))?),
    })
}

fn parse_bool(s: &str) -> CallResult {
    Ok(Value::Bool(match s {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
        _ => {
            return Err(format!(
                "parseBool: strconv.ParseBool: parsing {}: invalid syntax",
                crate::go_quote::quote(s)
            )
            .into())
        }
    }))
}

const STD_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Padded base64 (Go's `base64.StdEncoding`/`URLEncoding`).
fn base64_encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str, alphabet: &[u8; 64]) -> Result<String, String> {
    let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'\r' && *b != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let illegal = |i: usize| format!("illegal base64 data at input byte {i}");
    if !bytes.len().is_multiple_of(4) {
        return Err(illegal(bytes.len() / 4 * 4));
    }
    for (c, chunk) in bytes.chunks(4).enumerate() {
        let mut n = 0u32;
        let mut pad = 0;
        for (i, b) in chunk.iter().enumerate() {
            let at = c * 4 + i;
            let v = if *b == b'=' && i >= 2 && c * 4 + 4 == bytes.len() {
                pad += 1;
                0
            } else if pad > 0 {
                return Err(illegal(at));
            } else {
                alphabet.iter().position(|a| a == b).ok_or_else(|| illegal(at))? as u32
            };
            n = (n << 6) | v;
        }
        if pad == 1 && chunk[3] != b'=' {
            return Err(illegal(c * 4 + 3));
        }
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn by_tag(services: &Value) -> CallResult {
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for service in list_items(services) {
        for tag in field(&service, "Tags").map(|t| list_items(&t)).unwrap_or_default() {
            groups.entry(string_arg(&tag)).or_default().push(service.clone());
        }
    }
    Ok(Value::map(groups.into_iter().map(|(k, v)| (k, Value::list(v))).collect()))
}

fn by_key(pairs: &Value) -> CallResult {
    let mut groups: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for pair in list_items(pairs) {
        let key = field(&pair, "Key").map(|k| string_arg(&k)).unwrap_or_default();
        let (top, rest) = key.split_once('/').unwrap_or((&key, ""));
        if rest.is_empty() {
            continue;
        }
        let renamed = with_field(&pair, "Key", Value::String(rest.to_string()));
        groups.entry(top.to_string()).or_default().insert(rest.to_string(), renamed);
    }
    Ok(Value::map(groups.into_iter().map(|(k, v)| (k, Value::map(v))).collect()))
}

fn with_field(v: &Value, name: &str, new: Value) -> Value {
    match v {
        Value::Record(r) => {
            let mut r = (**r).clone();
            for (n, value) in &mut r.fields {
                if n == name {
                    *value = new.clone();
                }
            }
            Value::Record(std::sync::Arc::new(r))
        }
        Value::Map(m) => {
            let mut m = (**m).clone();
            m.insert(name.to_string(), new);
            Value::map(m)
        }
        other => other.clone(),
    }
}

/// `byMeta "k1,k2|int" services`: groups by the meta values joined with `_`.
fn by_meta(meta: &str, services: &Value) -> CallResult {
    let keys: Vec<(String, bool)> = meta
        .split(',')
        .map(|k| match k.split_once('|') {
            Some((name, "int")) => (name.trim().to_string(), true),
            Some((name, _)) => (name.trim().to_string(), false),
            None => (k.trim().to_string(), false),
        })
        .collect();
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for service in list_items(services) {
        let service_meta = field(&service, "ServiceMeta");
        let mut parts = Vec::new();
        for (key, as_int) in &keys {
            let value = service_meta.as_ref().and_then(|m| field(m, key)).map(|v| string_arg(&v));
            let part = match value {
                None => format!("_no_{key}_"),
                Some(v) if *as_int => match v.trim().parse::<i64>() {
                    Ok(n) => format!("{n:05}"),
                    Err(_) => {
                        return Err(
                            format!("byMeta: failed to parse {} as int", crate::go_quote::quote(&v)).into()
                        )
                    }
                },
                Some(v) => v,
            };
            parts.push(
                part.chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
                    .collect::<String>(),
            );
        }
        groups.entry(parts.join("_")).or_default().push(service);
    }
    Ok(Value::map(groups.into_iter().map(|(k, v)| (k, Value::list(v))).collect()))
}

fn explode(pairs: &Value) -> CallResult {
    let mut root = BTreeMap::new();
    for pair in list_items(pairs) {
        let key = field(&pair, "Key").map(|k| string_arg(&k)).unwrap_or_default();
        let value = field(&pair, "Value").unwrap_or(Value::String(String::new()));
        explode_into(&mut root, &key, value, &key).map_err(|e| wrap("explode", e))?;
    }
    Ok(Value::map(root))
}

fn explode_map(map: &Value) -> CallResult {
    let Value::Map(entries) = map else {
        return Err(format!("explodeMap: wrong type for value; expected map; got {}", map.type_name()).into());
    };
    let mut root = BTreeMap::new();
    for (k, v) in entries.iter() {
        explode_into(&mut root, k, v.clone(), k).map_err(|e| wrap("explodeMap", e))?;
    }
    Ok(Value::map(root))
}

/// consul-template's `explodeHelper`: stores `value` at the `/`-separated path `key`.
fn explode_into(
    m: &mut BTreeMap<String, Value>,
    key: &str,
    value: Value,
    path: &str,
) -> Result<(), CallError> {
    // The recursion (here, and in printing and encoding the result) follows the `/`s.
    if key.matches('/').count() >= VALUE_DEPTH_MAX {
        return Err(format!("{}: more than {VALUE_DEPTH_MAX} levels", crate::go_quote::quote(path)).into());
    }
    let Some((top, rest)) = key.split_once('/') else {
        if !key.is_empty() {
            m.insert(key.to_string(), value);
        }
        return Ok(());
    };
    let entry = m.entry(top.to_string()).or_insert_with(|| Value::map(BTreeMap::new()));
    let Value::Map(nested) = entry else {
        return Err(format!(
            "not a map: {}: {} already has value {}",
            crate::go_quote::quote(path),
            crate::go_quote::quote(top),
            crate::go_quote::quote(&entry.to_go_string())
        )
        .into());
    };
    explode_into(std::sync::Arc::make_mut(nested), rest, value, key)
}

fn indent(spaces: &Value, s: &str) -> CallResult {
    let n = match spaces {
        Value::Int(n) => *n,
        _ => 0,
    };
    if n < 0 {
        return Err("indent value must be a positive integer".into());
    }
    let n = n as usize;
    if n > PAD_MAX {
        return Err(format!("indent value {n} is over the limit of {PAD_MAX}").into());
    }
    let lines = s.split('\n').filter(|l| !l.is_empty()).count();
    check_size("indent", s.len() + lines * n)?;
    let prefix = " ".repeat(n);
    let mut out = String::with_capacity(s.len());
    let mut at_line_start = true;
    for c in s.chars() {
        if at_line_start && c != '\n' {
            out.push_str(&prefix);
        }
        out.push(c);
        at_line_start = c == '\n';
    }
    Ok(Value::String(out))
}

/// consul-template's `add`/`subtract`/…: `b` is the first argument, `a` the second (piped).
fn arithmetic(name: &str, a: &Value, b: &Value) -> CallResult {
    let unknown = |v: &Value| {
        format!("{name}: unknown type for {} ({})", crate::go_quote::quote(&v.to_go_string()), v.type_name())
    };
    if name == "minimum" || name == "maximum" {
        return min_max(name == "minimum", a, b).ok_or_else(|| CallError::from(unknown(b)));
    }
    let result = match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            int_op(name, i128::from(*x), i128::from(*y)).map(|r| Value::Int(r as i64))?
        }
        (Value::Int(x), Value::Uint(y)) => {
            int_op(name, i128::from(*x), i128::from(*y)).map(|r| Value::Int(r as i64))?
        }
        (Value::Uint(x), Value::Int(y)) => {
            int_op(name, i128::from(*x), i128::from(*y)).map(|r| Value::Int(r as i64))?
        }
        (Value::Uint(x), Value::Uint(y)) => {
            int_op(name, i128::from(*x), i128::from(*y)).map(|r| Value::Uint(r as u64))?
        }
        (Value::Int(x), Value::Float(y)) => Value::Float(float_op(name, *x as f64, *y, b)?),
        (Value::Uint(x), Value::Float(y)) => Value::Float(float_op(name, *x as f64, *y, b)?),
        (Value::Float(x), Value::Int(y)) => Value::Float(float_op(name, *x, *y as f64, b)?),
        (Value::Float(x), Value::Uint(y)) => Value::Float(float_op(name, *x, *y as f64, b)?),
        (Value::Float(x), Value::Float(y)) => Value::Float(float_op(name, *x, *y, b)?),
        (Value::Int(_) | Value::Uint(_) | Value::Float(_), _) => return Err(unknown(b).into()),
        _ => return Err(unknown(a).into()),
    };
    Ok(result)
}

/// `minimum`/`maximum`: the chosen operand itself, with its own type, as consul-template returns
/// `av.Int()` or `bv.Float()`.
fn min_max(minimum: bool, a: &Value, b: &Value) -> Option<Value> {
    let as_f64 = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Uint(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    let (x, y) = (as_f64(a)?, as_f64(b)?);
    let a_wins = if minimum { x < y } else { x > y };
    Some(if a_wins { a.clone() } else { b.clone() })
}

fn int_op(name: &str, a: i128, b: i128) -> Result<i128, CallError> {
    Ok(match name {
        "add" => a.wrapping_add(b),
        "subtract" => a.wrapping_sub(b),
        "multiply" => a.wrapping_mul(b),
        "divide" | "modulo" if b == 0 => return Err("runtime error: integer divide by zero".into()),
        "divide" => a / b,
        "modulo" => a % b,
        "minimum" => a.min(b),
        _ => a.max(b),
    })
}

fn float_op(name: &str, a: f64, b: f64, b_value: &Value) -> Result<f64, CallError> {
    Ok(match name {
        "add" => a + b,
        "subtract" => a - b,
        "multiply" => a * b,
        "divide" => a / b,
        "modulo" => {
            return Err(format!(
                "modulo: unknown type for {} ({})",
                crate::go_quote::quote(&b_value.to_go_string()),
                b_value.type_name()
            )
            .into())
        }
        "minimum" => a.min(b),
        _ => a.max(b),
    })
}

/// `loop n` or `loop start stop`: the integers in `[start, stop)`.
fn loop_values(args: &[Value]) -> CallResult {
    let ints: Vec<i64> = args.iter().map(loop_int).collect::<Result<_, _>>()?;
    let (start, stop) = match ints.as_slice() {
        [n] => (0, *n),
        [a, b] => (*a, *b),
        _ => {
            return Err(
                format!("loop: wrong number of arguments, expected 1 or 2, but got {}", args.len()).into()
            )
        }
    };
    if stop.saturating_sub(start) > LOOP_LENGTH_MAX {
        return Err(format!(
            "loop: {} iterations is over the limit of {LOOP_LENGTH_MAX}",
            stop.saturating_sub(start)
        )
        .into());
    }
    Ok(Value::list((start..stop).map(Value::Int).collect()))
}

fn loop_int(v: &Value) -> Result<i64, CallError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Uint(u) => i64::try_from(*u).map_err(|_| CallError::from("loop: value out of range")),
        Value::String(s) => match parse_number("parseInt", s)? {
            Value::Int(i) => Ok(i),
            _ => Ok(0),
        },
        other => Err(format!("loop: bad argument type: {}", other.type_name()).into()),
    }
}

/// `timestamp`, `timestamp "unix"`, `timestamp "<Go layout>"`, all in UTC.
fn timestamp(now_unix_nanos: i64, layout: Option<String>) -> CallResult {
    let layout = layout.unwrap_or_else(|| "2006-01-02T15:04:05Z07:00".to_string());
    if layout == "unix" {
        return Ok(Value::String(now_unix_nanos.div_euclid(1_000_000_000).to_string()));
    }
    Ok(Value::String(format_go_time(now_unix_nanos, &layout)))
}

/// Go's `time.Time.Format` in UTC for the common layout elements.
fn format_go_time(unix_nanos: i64, layout: &str) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (day_secs / 3600, day_secs / 60 % 60, day_secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize;
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    let month_name = MONTHS[(month - 1) as usize];
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    // Longest tokens first, as Go's `nextStdChunk` matches them.
    let tokens: &[(&str, String)] = &[
        ("January", month_name.to_string()),
        ("Monday", DAYS[weekday].to_string()),
        ("Z07:00", "Z".to_string()),
        ("-07:00", "+00:00".to_string()),
        ("-0700", "+0000".to_string()),
        ("Z0700", "Z".to_string()),
        ("2006", format!("{year:04}")),
        (".000000000", format!(".{nanos:09}")),
        (".000000", format!(".{:06}", nanos / 1000)),
        (".000", format!(".{:03}", nanos / 1_000_000)),
        ("Jan", month_name[..3].to_string()),
        ("Mon", DAYS[weekday][..3].to_string()),
        ("MST", "UTC".to_string()),
        ("002", format!("{:03}", day_of_year(year, month, day))),
        ("01", format!("{month:02}")),
        ("02", format!("{day:02}")),
        ("_2", format!("{day:>2}")),
        ("15", format!("{hour:02}")),
        ("03", format!("{hour12:02}")),
        ("04", format!("{minute:02}")),
        ("05", format!("{second:02}")),
        ("06", format!("{:02}", year.rem_euclid(100))),
        ("PM", if hour >= 12 { "PM" } else { "AM" }.to_string()),
        ("pm", if hour >= 12 { "pm" } else { "am" }.to_string()),
        ("1", month.to_string()),
        ("2", day.to_string()),
        ("3", hour12.to_string()),
        ("4", minute.to_string()),
        ("5", second.to_string()),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (token, value) in tokens {
            if rest.starts_with(token) {
                out.push_str(value);
                rest = &rest[token.len()..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn day_of_year(year: i64, month: i64, day: i64) -> i64 {
    const CUMULATIVE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    CUMULATIVE[(month - 1) as usize] + day + i64::from(leap && month > 2)
}
