//! `muster snapshot save|restore|inspect` (`../shared/reference/consul-behaviour.md` §4.2):
//! Consul's archive over `/v1/snapshot`, with progress on a terminal for large states.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{CliError, Client, FileError, HttpArgs, Outcome, Progress};

/// `muster snapshot <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Saves the servers' state to a file.
    Save(SaveArgs),
    /// Replaces the servers' state with a saved one.
    Restore(FileArgs),
    /// Prints what a snapshot file holds.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The snapshot file.
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// What to append to the file's name, before its extension, comma-separated: `version`,
    /// `dc`, `node`, `status` (`leader` or `follower`), always in that order.
    #[arg(long = "append-filename", default_value = "")]
    append_filename: String,
    /// The snapshot file.
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Adds a breakdown of the KV store's keys, by prefix, to the table.
    #[arg(long)]
    kvdetails: bool,
    /// How many `/`-separated parts of a key make its prefix in -kvdetails's breakdown.
    #[arg(long, default_value_t = 2)]
    kvdepth: usize,
    /// Only keys starting with this prefix in -kvdetails's breakdown.
    #[arg(long, default_value = "")]
    kvfilter: String,
    /// The output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
    /// The snapshot file.
    args: Vec<String>,
}

pub(crate) fn run(command: SnapshotCommand) -> Outcome {
    match command {
        SnapshotCommand::Save(args) => save(&args),
        SnapshotCommand::Restore(args) => restore(&args),
        SnapshotCommand::Inspect(args) => inspect(&args),
    }
}

/// The one FILE argument, in Consul's words when it is missing or not alone.
fn file_argument(args: &[String]) -> Result<&str, CliError> {
    match args {
        [] => Err(CliError::usage("Missing FILE argument")),
        [file] => Ok(file),
        more => Err(CliError::Usage(format!("Too many arguments (expected 1, got {})", more.len()))),
    }
}

/// Writes the archive to `<file>.part`, syncs it, checks it as a restore would, then renames it
/// into place: a failed or interrupted save leaves no file that looks whole.
fn save(args: &SaveArgs) -> Outcome {
    let file = file_argument(&args.args)?;
    let client = Client::new(&args.http)?;
    let named;
    let file = if args.append_filename.is_empty() {
        file
    } else {
        named = appended_name(&client, file, &args.append_filename)?;
        named.as_str()
    };
    let mut progress = Progress::new();
    progress.show("Saving snapshot...");
    let reply = client
        .get_counted("/v1/snapshot", &[], |bytes| {
            progress.show(&format!("Saving snapshot: {} received", size(bytes)))
        })
        .map_err(CliError::client("Error saving snapshot"))?;
    let index = reply.index.unwrap_or(0);
    let archive = reply.ok().map_err(CliError::client("Error saving snapshot"))?;
    progress.show(&format!("Saving snapshot: {} received, writing {file}", size(archive.len() as u64)));
    let part = PathBuf::from(format!("{file}.part"));
    write_synced(&part, &archive).map_err(CliError::io("Error writing snapshot file"))?;
    if let Err(source) = muster::http::inspect_archive(&archive) {
        let _ = std::fs::remove_file(&part);
        return Err(CliError::Archive { doing: "Error verifying snapshot file", source });
    }
    std::fs::rename(&part, file).map_err(CliError::io("Error writing snapshot file"))?;
    progress.done();
    println!("Saved and verified snapshot to index {index}");
    Ok(0)
}

/// `file` with what `-append-filename` asks for put before its extension, from the agent's
/// `/v1/agent/self` (Consul's `snapshot save`): `backup.snap` with `version,dc` becomes
/// `backup-1.20.0-dc1.snap`.
fn appended_name(client: &Client, file: &str, wanted: &str) -> Result<String, CliError> {
    let agent: serde_json::Value = client
        .get("/v1/agent/self", &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error connecting to Consul agent and fetching datacenter/version"))?;
    let wanted: Vec<&str> = wanted.split(',').collect();
    // Go's `filepath.Ext`: from the last dot of the last path element.
    let name_start = file.rfind('/').map_or(0, |slash| slash + 1);
    let (stem, extension) = match file[name_start..].rfind('.') {
        Some(dot) => file.split_at(name_start + dot),
        None => (file, ""),
    };
    let mut stem = stem.to_owned();
    let config = |key: &str| agent["Config"][key].as_str().map(str::to_owned);
    for (part, value) in
        [("version", config("Version")), ("dc", config("Datacenter")), ("node", config("NodeName"))]
    {
        if let Some(value) = value.filter(|_| wanted.contains(&part)) {
            stem = format!("{stem}-{value}");
        }
    }
    if wanted.contains(&"status") {
        if let Some(leader) = agent["Stats"]["consul"].get("leader") {
            let role = if leader.as_str() == Some("true") { "leader" } else { "follower" };
            stem = format!("{stem}-{role}");
        }
    }
    Ok(format!("{stem}{extension}"))
}

/// `bytes` for a progress line: bytes, KiB or MiB.
fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..0x10_0000 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::fs::File::create(path)?;
    out.write_all(bytes)?;
    out.sync_all()
}

fn restore(args: &FileArgs) -> Outcome {
    let file = file_argument(&args.args)?;
    let archive = read_file(file)?;
    let client = Client::new(&args.http)?;
    let mut progress = Progress::new();
    progress.show(&format!("Restoring snapshot: sending {}", size(archive.len() as u64)));
    client
        .put("/v1/snapshot", &[], &archive)
        .and_then(|reply| reply.ok())
        .map_err(CliError::client("Error restoring snapshot"))?;
    progress.done();
    println!("Restored snapshot");
    Ok(0)
}

fn read_file(file: &str) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|error| {
        CliError::File { doing: "Error opening snapshot file", source: FileError::at(file)(error) }
    })?;
    Ok(bytes)
}

fn inspect(args: &InspectArgs) -> Outcome {
    let file = file_argument(&args.args)?;
    let archive = read_file(file)?;
    let info = muster::http::inspect_archive(&archive)
        .map_err(|source| CliError::Archive { doing: "Error extracting snapshot data", source })?;
    let stats = Stats::of(&info, args);
    let text = match args.format.as_str() {
        "pretty" => stats.pretty(),
        "json" => stats.json(),
        other => {
            return Err(CliError::Usage(format!(
                "Error outputting enhanced snapshot data: Unknown format: {other}"
            )))
        }
    };
    println!("{text}");
    Ok(0)
}

/// What `snapshot inspect` prints (Consul's `OutputFormat`): the metadata, each kind of row
/// with its count and bytes, and with -kvdetails the same for each key prefix.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Stats {
    meta: Meta,
    stats: Vec<KindStats>,
    #[serde(rename = "StatsKV")]
    stats_kv: Option<Vec<KindStats>>,
    total_size: u64,
    #[serde(rename = "TotalSizeKV")]
    total_size_kv: u64,
}

/// The archive's metadata, as Consul names it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Meta {
    #[serde(rename = "ID")]
    id: String,
    size: u64,
    index: u64,
    term: u64,
    version: u64,
}

/// One row of a table (Consul's `typeStats`): a kind or a key prefix, its bytes and count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct KindStats {
    name: String,
    sum: u64,
    count: usize,
}

impl Stats {
    fn of(info: &muster::http::ArchiveInfo, args: &InspectArgs) -> Stats {
        let stats: Vec<KindStats> = info
            .kinds
            .iter()
            .filter(|(_, count, _)| *count > 0)
            .map(|(name, count, sum)| KindStats { name: (*name).to_owned(), sum: *sum, count: *count })
            .collect();
        let mut prefixes: std::collections::BTreeMap<String, KindStats> = Default::default();
        if args.kvdetails {
            for (key, size) in info.keys.iter().filter(|(key, _)| key.starts_with(&args.kvfilter)) {
                let parts: Vec<&str> = key.split('/').collect();
                let prefix = parts[..args.kvdepth.min(parts.len())].join("/");
                let row =
                    prefixes.entry(prefix.clone()).or_insert(KindStats { name: prefix, sum: 0, count: 0 });
                row.sum += size;
                row.count += 1;
            }
        }
        let total_size_kv = prefixes.values().map(|row| row.sum).sum();
        let stats_kv = (!prefixes.is_empty()).then(|| by_size(prefixes.into_values().collect()));
        Stats {
            meta: Meta {
                id: info.id.clone(),
                size: info.size_bytes,
                index: info.index,
                term: info.term,
                version: info.version,
            },
            total_size: stats.iter().map(|row| row.sum).sum(),
            stats: by_size(stats),
            stats_kv,
            total_size_kv,
        }
    }

    /// Consul's pretty format: one tabwriter (minimum width 8, padding 6) over the metadata,
    /// the kinds, and with -kvdetails the key prefixes.
    fn pretty(&self) -> String {
        let mut text = format!(
            " ID\t{}\n Size\t{}\n Index\t{}\n Term\t{}\n Version\t{}\n",
            self.meta.id, self.meta.size, self.meta.index, self.meta.term, self.meta.version
        );
        let table = |text: &mut String, heading: &str, rows: &[KindStats], total: u64| {
            text.push_str(&format!("\n {heading}\tCount\tSize\n ----\t----\t----"));
            for row in rows {
                text.push_str(&format!("\n {}\t{}\t{}", row.name, row.count, byte_size(row.sum)));
            }
            text.push_str(&format!("\n ----\t----\t----\n Total\t\t{}", byte_size(total)));
        };
        table(&mut text, "Type", &self.stats, self.total_size);
        if let Some(rows) = &self.stats_kv {
            text.push('\n');
            table(&mut text, "Key Name", rows, self.total_size_kv);
        }
        tabwriter(&text, 8, 6)
    }

    /// Consul's JSON format: `OutputFormat` indented by three spaces.
    fn json(&self) -> String {
        use serde::Serialize;
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        self.serialize(&mut serializer).expect("stats serialize");
        String::from_utf8(out).expect("JSON is UTF-8")
    }
}

/// Largest first, then by name (Consul's `sortTypeStats`).
fn by_size(mut rows: Vec<KindStats>) -> Vec<KindStats> {
    rows.sort_by(|a, b| b.sum.cmp(&a.sum).then_with(|| a.name.cmp(&b.name)));
    rows
}

/// Consul's `ByteSize`: `0`, `285B`, `12.3KB`, `2KB` (one decimal, a trailing `.0` dropped).
fn byte_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TB"), (1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    if bytes == 0 {
        return "0".into();
    }
    let (scale, unit) = UNITS.iter().copied().find(|(scale, _)| bytes >= *scale).unwrap_or((1, "B"));
    let value = format!("{:.1}", bytes as f64 / scale as f64);
    format!("{}{unit}", value.strip_suffix(".0").unwrap_or(&value))
}

/// Go's `text/tabwriter` with a space as padding character and no flags: a cell is text ended
/// by a tab; the cells of a column in consecutive lines (a block) are padded to the widest plus
/// `padding`, at least `width_min`; the text after a line's last tab is not in any column.
fn tabwriter(text: &str, width_min: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|line| line.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|cells| vec![0; cells.len()]).collect();
    tabwriter_block(&lines, &mut widths, 0, lines.len(), 0, width_min, padding);
    let rendered: Vec<String> = lines
        .iter()
        .zip(&widths)
        .map(|(cells, widths)| {
            let last = cells.len() - 1;
            cells
                .iter()
                .zip(widths)
                .enumerate()
                .map(
                    |(i, (cell, width))| {
                        if i == last {
                            (*cell).to_owned()
                        } else {
                            format!("{cell:<width$}")
                        }
                    },
                )
                .collect()
        })
        .collect();
    rendered.join("\n")
}

/// Sizes column `column` of lines `start..end`, block by block, then the columns right of it
/// within each block (the recursion of Go's `Writer.format`, at most as deep as a line has cells).
fn tabwriter_block(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    start: usize,
    end: usize,
    column: usize,
    width_min: usize,
    padding: usize,
) {
    let mut line = start;
    while line < end {
        if column + 1 >= lines[line].len() {
            line += 1;
            continue;
        }
        let block = line;
        let mut width = width_min;
        while line < end && column + 1 < lines[line].len() {
            width = width.max(lines[line][column].chars().count() + padding);
            line += 1;
        }
        for row in &mut widths[block..line] {
            row[column] = width;
        }
        tabwriter_block(lines, widths, block, line, column + 1, width_min, padding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_sizes_read_as_people_read_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 << 20), "5.0 MiB");
    }

    fn inspect_args(kvdetails: bool, kvdepth: usize, kvfilter: &str) -> InspectArgs {
        let kvfilter = kvfilter.to_owned();
        InspectArgs { kvdetails, kvdepth, kvfilter, format: "pretty".into(), args: vec![] }
    }

    fn archive_info() -> muster::http::ArchiveInfo {
        muster::http::ArchiveInfo {
            id: "2-12426-1604593650375".into(),
            size_bytes: 17228,
            index: 12426,
            term: 2,
            version: 1,
            kinds: vec![("Node", 1, 166), ("KVS", 3, 12_595), ("Session", 0, 0)],
            keys: vec![
                ("vault/logical/a/x".into(), 1000),
                ("vault/logical/a/y".into(), 843),
                ("vault/core".into(), 210),
                ("app".into(), 10_542),
            ],
        }
    }

    #[test]
    fn inspect_prints_consuls_table() {
        let stats = Stats::of(&archive_info(), &inspect_args(false, 2, ""));
        assert_eq!(
            stats.pretty(),
            " ID           2-12426-1604593650375\n Size         17228\n Index        12426\n Term         2\n \
             Version      1\n\n Type       Count      Size\n ----       ----       ----\n \
             KVS        3          12.3KB\n Node       1          166B\n ----       ----       ----\n \
             Total                 12.5KB"
        );
        assert!(stats.json().contains("\n   \"StatsKV\": null,\n"), "{}", stats.json());
    }

    #[test]
    fn kvdetails_break_the_keys_down_by_prefix() {
        let stats = Stats::of(&archive_info(), &inspect_args(true, 3, "vault"));
        assert_eq!(
            stats.stats_kv.as_deref().unwrap(),
            [
                KindStats { name: "vault/logical/a".into(), sum: 1843, count: 2 },
                KindStats { name: "vault/core".into(), sum: 210, count: 1 },
            ]
        );
        assert!(stats.pretty().ends_with(
            "\n\n Key Name             Count      Size\n ----                 ----       ----\n \
             vault/logical/a      2          1.8KB\n vault/core           1          210B\n \
             ----                 ----       ----\n Total                           2KB"
        ));
        // Depth 1 and no filter: every key, by its first part.
        let stats = Stats::of(&archive_info(), &inspect_args(true, 1, ""));
        let names: Vec<&str> = stats.stats_kv.iter().flatten().map(|row| row.name.as_str()).collect();
        assert_eq!(names, ["app", "vault"]);
    }

    #[test]
    fn sizes_read_as_consuls_byte_size() {
        assert_eq!(byte_size(0), "0");
        assert_eq!(byte_size(285), "285B");
        assert_eq!(byte_size(12_595), "12.3KB");
        assert_eq!(byte_size(2048), "2KB");
        assert_eq!(byte_size(5 << 20), "5MB");
    }

    #[test]
    fn one_file_argument_is_required() {
        assert_eq!(file_argument(&[]).unwrap_err().to_string(), "Missing FILE argument");
        let two = ["a".to_owned(), "b".to_owned()];
        assert_eq!(file_argument(&two).unwrap_err().to_string(), "Too many arguments (expected 1, got 2)");
    }
}
