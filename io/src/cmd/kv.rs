//! `muster kv get|put|delete|export|import`, with Consul's flags, lines and exit codes
//! (`command/kv/*`; `../shared/reference/consul-behaviour.md` §4.3).

use base64::Engine;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use super::{at_most, data_argument, CliError, Client, ClientError, HttpArgs, Outcome, Progress};

/// `muster kv <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum KvCommand {
    /// Reads a key's value, or the keys and values under a prefix.
    Get(GetArgs),
    /// Writes a key's value.
    Put(PutArgs),
    /// Deletes a key, or every key under a prefix.
    Delete(DeleteArgs),
    /// Prints the keys under a prefix as JSON that `kv import` reads.
    Export(ExportArgs),
    /// Writes the keys of a `kv export`.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// Prints every key and value under the prefix, as `key:value`.
    #[arg(long)]
    recurse: bool,
    /// Lists the key names under the prefix, up to the separator.
    #[arg(long)]
    keys: bool,
    /// With -keys, lists only up to this string.
    #[arg(long, default_value = "/")]
    separator: String,
    /// Prints the entry's metadata as well as its value.
    #[arg(long)]
    detailed: bool,
    /// Prints values base64 encoded.
    #[arg(long)]
    base64: bool,
    /// KEY or PREFIX.
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// An opaque number stored with the value.
    #[arg(long, default_value_t = 0)]
    flags: u64,
    /// Writes only if the key's ModifyIndex is still -modify-index (which must be given).
    #[arg(long)]
    cas: bool,
    /// The index -cas compares with.
    #[arg(long = "modify-index", default_value_t = 0)]
    modify_index: u64,
    /// Takes the key's lock for -session.
    #[arg(long)]
    acquire: bool,
    /// Releases the key's lock held by -session.
    #[arg(long)]
    release: bool,
    /// The session for -acquire and -release.
    #[arg(long, default_value = "")]
    session: String,
    /// The data is base64 encoded.
    #[arg(long)]
    base64: bool,
    /// KEY, then DATA, `@file` or `-` for stdin.
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// Deletes every key under the prefix.
    #[arg(long)]
    recurse: bool,
    /// Deletes only if the key's ModifyIndex is still -modify-index.
    #[arg(long)]
    cas: bool,
    /// The index -cas compares with.
    #[arg(long = "modify-index", default_value_t = 0)]
    modify_index: u64,
    /// KEY or PREFIX.
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// PREFIX (all keys when absent).
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// Prepended to every imported key.
    #[arg(long, default_value = "")]
    prefix: String,
    /// DATA, `@file` or `-` for stdin: the JSON `kv export` prints.
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

/// An entry as `/v1/kv` answers it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    key: String,
    create_index: u64,
    modify_index: u64,
    lock_index: u64,
    flags: u64,
    value: Option<String>,
    session: Option<String>,
}

impl Pair {
    fn value(&self) -> Vec<u8> {
        let text = self.value.as_deref().unwrap_or_default();
        base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()
    }
}

/// An entry of `kv export`'s JSON (Consul's `kvExportEntry`).
#[derive(Debug, Serialize, Deserialize)]
struct ExportEntry {
    key: String,
    #[serde(default)]
    flags: u64,
    value: String,
}

pub(crate) fn run(command: KvCommand) -> Outcome {
    match command {
        KvCommand::Get(args) => get(&args),
        KvCommand::Put(args) => put(&args),
        KvCommand::Delete(args) => delete(&args),
        KvCommand::Export(args) => export(&args),
        KvCommand::Import(args) => import(&args),
    }
}

/// A data argument that could not be read, as `kv` words it.
fn kv_data(source: super::DataError) -> CliError {
    CliError::Data { prefix: "Error! ", source }
}

/// Pairs cannot start with a `/`, but users will type `/` or `/foo`; Consul strips it for them.
fn strip_slash(key: &str) -> &str {
    key.strip_prefix('/').unwrap_or(key)
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{key}")
}

/// A read of the store that failed, in Consul's words.
fn querying(source: ClientError) -> CliError {
    CliError::Client { doing: "Error querying Consul agent".into(), source }
}

fn get(args: &GetArgs) -> Outcome {
    at_most(&args.args, 1)?;
    let key = strip_slash(args.args.first().map_or("", String::as_str));
    if key.is_empty() && !(args.recurse || args.keys) {
        return Err(CliError::usage("Error! Missing KEY argument"));
    }
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    let shown = |value: &[u8]| {
        if args.base64 {
            base64::engine::general_purpose::STANDARD.encode(value)
        } else {
            String::from_utf8_lossy(value).into_owned()
        }
    };
    if args.keys {
        let reply =
            client.get(&kv_path(key), &[("keys", ""), ("separator", &args.separator)]).map_err(querying)?;
        if reply.status == 404 {
            return Ok(0);
        }
        for key in reply.json::<Vec<String>>().map_err(querying)? {
            println!("{key}");
        }
        return Ok(0);
    }
    if args.recurse {
        let reply = client.get(&kv_path(key), &[("recurse", "")]).map_err(querying)?;
        let pairs =
            if reply.status == 404 { Vec::new() } else { reply.json::<Vec<Pair>>().map_err(querying)? };
        for (i, pair) in pairs.iter().enumerate() {
            if args.detailed {
                println!("{}", detailed(pair, &shown(&pair.value())));
                if i + 1 < pairs.len() {
                    println!();
                }
            } else {
                println!("{}:{}", pair.key, shown(&pair.value()));
            }
        }
        return Ok(0);
    }
    let reply = client.get(&kv_path(key), &[]).map_err(querying)?;
    if reply.status == 404 {
        return Err(CliError::Refused(format!("Error! No key exists at: {key}")));
    }
    let pairs = reply.json::<Vec<Pair>>().map_err(querying)?;
    let Some(pair) = pairs.first() else {
        return Err(CliError::Refused(format!("Error! No key exists at: {key}")));
    };
    if args.detailed {
        println!("{}", detailed(pair, &shown(&pair.value())));
    } else {
        println!("{}", shown(&pair.value()));
    }
    Ok(0)
}

/// Consul's `prettyKVPair`: a tabwriter table, cells padded by six spaces past the widest name.
fn detailed(pair: &Pair, value: &str) -> String {
    let session = pair.session.as_deref().filter(|s| !s.is_empty()).unwrap_or("-");
    let rows = [
        ("CreateIndex", pair.create_index.to_string()),
        ("Flags", pair.flags.to_string()),
        ("Key", pair.key.clone()),
        ("LockIndex", pair.lock_index.to_string()),
        ("ModifyIndex", pair.modify_index.to_string()),
        ("Session", session.to_owned()),
        ("Value", value.to_owned()),
    ];
    let lines: Vec<String> = rows.iter().map(|(name, cell)| format!("{name:<17}{cell}")).collect();
    lines.join("\n")
}

fn put(args: &PutArgs) -> Outcome {
    let (key, data) = match args.args.as_slice() {
        [] => return Err(CliError::usage("Error! Missing KEY argument")),
        [key] => (key.as_str(), Vec::new()),
        [key, data] if data.is_empty() => (key.as_str(), Vec::new()),
        [key, data] => (key.as_str(), data_argument(data).map_err(kv_data)?),
        more => {
            return Err(CliError::Usage(format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            )))
        }
    };
    let key = strip_slash(key);
    let data = if args.base64 {
        let text = String::from_utf8_lossy(&data);
        base64::engine::general_purpose::STANDARD
            .decode(text.trim_end_matches('\n'))
            .map_err(CliError::base64("Error! Cannot base 64 decode data"))?
    } else {
        data
    };
    if (args.release || args.acquire) && args.session.is_empty() {
        return Err(CliError::usage("Error! Missing -session (required with -acquire and -release)"));
    }
    if args.cas && args.modify_index == 0 {
        return Err(CliError::usage("Must specify -modify-index with -cas!"));
    }
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    let flags = args.flags.to_string();
    let mut query = vec![];
    if args.flags != 0 {
        query.push(("flags", flags.as_str()));
    }
    let index = args.modify_index.to_string();
    if args.cas {
        query.push(("cas", index.as_str()));
    }
    if args.acquire {
        query.push(("acquire", args.session.as_str()));
    } else if args.release {
        query.push(("release", args.session.as_str()));
    }
    let written = client.put(&kv_path(key), &query, &data).and_then(|reply| reply.json::<bool>());
    // Consul's words for each kind of write: on an error, when the agent said false, on success.
    let (failed, refused, done) = if args.cas {
        (
            format!("Error! Did not write to {key}"),
            format!("Error! Did not write to {key}: CAS failed"),
            "Success! Data written to",
        )
    } else if args.acquire {
        (
            "Error! Failed writing data".to_owned(),
            "Error! Did not acquire lock".to_owned(),
            "Success! Lock acquired on",
        )
    } else if args.release {
        (
            "Error! Failed writing data".to_owned(),
            "Error! Did not release lock".to_owned(),
            "Success! Lock released on",
        )
    } else {
        // A plain write is never refused: false cannot come back.
        (
            "Error! Failed writing data".to_owned(),
            "Error! Failed writing data".to_owned(),
            "Success! Data written to",
        )
    };
    match written {
        Err(source) => Err(CliError::Client { doing: failed, source }),
        Ok(false) => Err(CliError::Refused(refused)),
        Ok(true) => {
            println!("{done}: {key}");
            Ok(0)
        }
    }
}

fn delete(args: &DeleteArgs) -> Outcome {
    at_most(&args.args, 1)?;
    let key = strip_slash(args.args.first().map_or("", String::as_str));
    if key.is_empty() && !args.recurse {
        return Err(CliError::usage("Error! Missing KEY argument"));
    }
    if args.cas && args.modify_index == 0 {
        return Err(CliError::usage(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
        ));
    }
    if args.modify_index != 0 && !args.cas {
        return Err(CliError::usage("Cannot specify -modify-index without -cas!"));
    }
    if args.recurse && args.cas {
        return Err(CliError::usage("Cannot specify both -cas and -recurse!"));
    }
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    if args.recurse {
        client
            .delete(&kv_path(key), &[("recurse", "")])
            .and_then(|reply| reply.ok())
            .map_err(CliError::client(format!("Error! Did not delete prefix {key}")))?;
        println!("Success! Deleted keys with prefix: {key}");
        return Ok(0);
    }
    if args.cas {
        let index = args.modify_index.to_string();
        let deleted = client.delete(&kv_path(key), &[("cas", &index)]).and_then(|reply| reply.json::<bool>());
        return match deleted {
            Err(source) => {
                Err(CliError::Client { doing: format!("Error! Did not delete key {key}"), source })
            }
            Ok(false) => Err(CliError::Refused(format!("Error! Did not delete key {key}: CAS failed"))),
            Ok(true) => {
                println!("Success! Deleted key: {key}");
                Ok(0)
            }
        };
    }
    client
        .delete(&kv_path(key), &[])
        .and_then(|reply| reply.ok())
        .map_err(CliError::client(format!("Error deleting key {key}")))?;
    println!("Success! Deleted key: {key}");
    Ok(0)
}

fn export(args: &ExportArgs) -> Outcome {
    at_most(&args.args, 1)?;
    let prefix = strip_slash(args.args.first().map_or("", String::as_str));
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    let reply = client.get(&kv_path(prefix), &[("recurse", "")]).map_err(querying)?;
    let pairs = if reply.status == 404 { Vec::new() } else { reply.json::<Vec<Pair>>().map_err(querying)? };
    let entries: Vec<ExportEntry> = pairs
        .iter()
        .map(|pair| ExportEntry {
            key: pair.key.clone(),
            flags: pair.flags,
            value: pair.value.clone().unwrap_or_default(),
        })
        .collect();
    println!("{}", go_indent(&entries));
    Ok(0)
}

/// JSON as Go's `json.MarshalIndent(v, "", "\t")` writes it.
fn go_indent(entries: &[ExportEntry]) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    entries.serialize(&mut serializer).expect("entries serialize");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// How many keys one `/v1/txn` of an import carries (Consul's transaction limit is 64
/// operations).
const IMPORT_BATCH_KEYS: usize = 64;

/// How many bytes of values one `/v1/txn` of an import carries at most: a transaction is one
/// Raft entry, and entries are bounded (4 MiB); a larger value goes alone, as a plain PUT.
const IMPORT_BATCH_BYTES: usize = 1 << 20;

/// Decodes every entry before writing any, so bad input writes nothing (Consul writes the
/// entries before a bad one), then writes them 64 to a transaction.
fn import(args: &ImportArgs) -> Outcome {
    let data = match args.args.as_slice() {
        [] => return Err(CliError::usage("Error! Missing DATA argument")),
        [data] => data_argument(data).map_err(kv_data)?,
        more => {
            return Err(CliError::Usage(format!(
                "Error! Too many arguments (expected 1, got {})",
                more.len()
            )))
        }
    };
    let entries: Vec<ExportEntry> =
        serde_json::from_slice(&data).map_err(CliError::json("Cannot unmarshal data"))?;
    let mut pairs = Vec::with_capacity(entries.len());
    for entry in &entries {
        base64::engine::general_purpose::STANDARD
            .decode(&entry.value)
            .map_err(CliError::base64(format!("Error base 64 decoding value for key {}", entry.key)))?;
        pairs.push((join_prefix(&args.prefix, &entry.key), entry));
    }
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    let mut progress = Progress::new();
    let mut written = 0;
    for chunk in batches(&pairs) {
        if let [(key, entry)] = chunk {
            if entry.value.len() > IMPORT_BATCH_BYTES {
                // Too large to share a transaction: a PUT of its own, as Consul imports.
                let value =
                    base64::engine::general_purpose::STANDARD.decode(&entry.value).expect("decoded above");
                let flags = entry.flags.to_string();
                client
                    .put(&kv_path(key), &[("flags", flags.as_str())], &value)
                    .and_then(|reply| reply.ok())
                    .map_err(CliError::client(format!("Error! Failed writing data for key {key}")))?;
                progress.done();
                println!("Imported: {key}");
                written += 1;
                continue;
            }
        }
        let ops: Vec<serde_json::Value> = chunk
            .iter()
            .map(|(key, entry)| {
                serde_json::json!({"KV": {"Verb": "set", "Key": key, "Flags": entry.flags, "Value": entry.value}})
            })
            .collect();
        let body = serde_json::to_vec(&ops).expect("operations serialize");
        client.put("/v1/txn", &[], &body).and_then(|reply| reply.ok()).map_err(|source| {
            let keys = chunk.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>().join(", ");
            CliError::Client { doing: format!("Error! Failed writing data for keys {keys}"), source }
        })?;
        progress.done();
        for (key, _) in chunk {
            println!("Imported: {key}");
        }
        written += chunk.len();
        progress.show(&format!("Imported {written} of {} keys", pairs.len()));
    }
    Ok(0)
}

/// The entries cut into transactions of at most [`IMPORT_BATCH_KEYS`] keys and
/// [`IMPORT_BATCH_BYTES`] of values; an entry over the byte budget is a batch of its own.
fn batches<'a>(pairs: &'a [(String, &'a ExportEntry)]) -> Vec<&'a [(String, &'a ExportEntry)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, entry)) in pairs.iter().enumerate() {
        let size = entry.value.len();
        let full = i - start == IMPORT_BATCH_KEYS || (i > start && bytes + size > IMPORT_BATCH_BYTES);
        if full {
            out.push(&pairs[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < pairs.len() {
        out.push(&pairs[start..]);
    }
    out
}

/// Go's `path.Join(prefix, key)`: joined by one `/`, cleaned of empty and `.` segments.
fn join_prefix(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        return key.to_owned();
    }
    let joined = format!("{prefix}/{key}");
    let segments: Vec<&str> = joined.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    let mut out = segments.join("/");
    if joined.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detailed_entry_is_consuls_table() {
        let pair = Pair {
            key: "redis/config/connections".into(),
            create_index: 336,
            modify_index: 336,
            lock_index: 0,
            flags: 42,
            value: Some("NQ==".into()),
            session: None,
        };
        assert_eq!(
            detailed(&pair, "5"),
            "CreateIndex      336\nFlags            42\nKey              redis/config/connections\n\
             LockIndex        0\nModifyIndex      336\nSession          -\nValue            5"
        );
    }

    #[test]
    fn export_is_tab_indented_lowercase_json() {
        let entries = [ExportEntry { key: "a".into(), flags: 0, value: "dg==".into() }];
        assert_eq!(
            go_indent(&entries),
            "[\n\t{\n\t\t\"key\": \"a\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"dg==\"\n\t}\n]"
        );
        assert_eq!(go_indent(&[]), "[]");
    }

    #[test]
    fn imports_are_cut_by_key_count_and_by_bytes() {
        let small = ExportEntry { key: "s".into(), flags: 0, value: "QQ==".into() };
        let big = ExportEntry { key: "b".into(), flags: 0, value: "A".repeat(IMPORT_BATCH_BYTES - 10) };
        let pairs: Vec<(String, &ExportEntry)> = (0..130).map(|i| (format!("k{i}"), &small)).collect();
        assert_eq!(batches(&pairs).iter().map(|b| b.len()).collect::<Vec<_>>(), [64, 64, 2]);
        let pairs: Vec<(String, &ExportEntry)> =
            vec![("a".into(), &small), ("b".into(), &big), ("c".into(), &big), ("d".into(), &small)];
        assert_eq!(batches(&pairs).iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 2]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn import_prefixes_join_as_go_paths_do() {
        assert_eq!(join_prefix("", "a/b"), "a/b");
        assert_eq!(join_prefix("p", "a/b"), "p/a/b");
        assert_eq!(join_prefix("p/", "/a//b"), "p/a/b");
    }
}
