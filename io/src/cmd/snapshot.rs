//! `muster snapshot save|restore|inspect` (`../shared/reference/consul-behaviour.md` §4.2):
//! Consul's archive over `/v1/snapshot`, with progress on a terminal for large states.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{go_io, Client, HttpArgs, Outcome, Progress};

/// `muster snapshot <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Saves the servers' state to a file.
    Save(FileArgs),
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
pub(crate) struct InspectArgs {
    /// The snapshot file.
    args: Vec<String>,
}

pub(crate) fn run(command: SnapshotCommand) -> Outcome {
    match command {
        SnapshotCommand::Save(args) => save(&args),
        SnapshotCommand::Restore(args) => restore(&args),
        SnapshotCommand::Inspect(args) => inspect(&args.args),
    }
}

/// The one FILE argument, in Consul's words when it is missing or not alone.
fn file_argument(args: &[String]) -> Result<&str, String> {
    match args {
        [] => Err("Missing FILE argument".into()),
        [file] => Ok(file),
        more => Err(format!("Too many arguments (expected 1, got {})", more.len())),
    }
}

/// Writes the archive to `<file>.part`, syncs it, checks it as a restore would, then renames it
/// into place: a failed or interrupted save leaves no file that looks whole.
fn save(args: &FileArgs) -> Outcome {
    let file = file_argument(&args.args)?;
    let client = Client::new(&args.http)?;
    let mut progress = Progress::new();
    progress.show("Saving snapshot...");
    let reply = client
        .get_counted("/v1/snapshot", &[], |bytes| {
            progress.show(&format!("Saving snapshot: {} received", size(bytes)))
        })
        .map_err(|error| format!("Error saving snapshot: {error}"))?;
    let index = reply.index.unwrap_or(0);
    let archive = reply.ok().map_err(|error| format!("Error saving snapshot: {error}"))?;
    progress.show(&format!("Saving snapshot: {} received, writing {file}", size(archive.len() as u64)));
    let part = PathBuf::from(format!("{file}.part"));
    write_synced(&part, &archive).map_err(|error| format!("Error writing snapshot file: {error}"))?;
    if let Err(reason) = muster::http::inspect_archive(&archive) {
        let _ = std::fs::remove_file(&part);
        return Err(format!("Error verifying snapshot file: {reason}"));
    }
    std::fs::rename(&part, file).map_err(|error| format!("Error writing snapshot file: {error}"))?;
    progress.done();
    println!("Saved and verified snapshot to index {index}");
    Ok(0)
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
        .map_err(|error| format!("Error restoring snapshot: {error}"))?;
    progress.done();
    println!("Restored snapshot");
    Ok(0)
}

fn read_file(file: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|error| format!("Error opening snapshot file: {}", go_io(&error, file)))?;
    Ok(bytes)
}

fn inspect(args: &[String]) -> Outcome {
    let file = file_argument(args)?;
    let archive = read_file(file)?;
    let info = muster::http::inspect_archive(&archive)
        .map_err(|reason| format!("Error extracting snapshot data: {reason}"))?;
    print!("{}", inspect_text(&info));
    Ok(0)
}

/// Consul's metadata table (a tabwriter with six spaces past the widest name).
fn inspect_text(info: &muster::http::ArchiveInfo) -> String {
    let rows = [
        ("ID", info.id.clone()),
        ("Size", info.size_bytes.to_string()),
        ("Index", info.index.to_string()),
        ("Term", info.term.to_string()),
        ("Version", info.version.to_string()),
    ];
    let mut text: String = rows.iter().map(|(name, value)| format!("{name:<13}{value}\n")).collect();
    // What the state holds, by kind of row (muster's kinds: its state machine is not Consul's
    // log of message types, so there is no per-type size to show).
    text.push_str(&format!("\n{:<13}{}\n{:<13}{}\n", "Type", "Count", "----", "-----"));
    for (kind, count) in &info.counts {
        text.push_str(&format!("{kind:<13}{count}\n"));
    }
    let total: usize = info.counts.iter().map(|(_, count)| count).sum();
    text.push_str(&format!("{:<13}{}\n{:<13}{total}\n", "----", "-----", "Total"));
    text
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

    #[test]
    fn inspect_prints_consuls_metadata_table() {
        let info = muster::http::ArchiveInfo {
            id: "2-5-1477944140022".into(),
            size_bytes: 667,
            index: 5,
            term: 2,
            version: 1,
            counts: vec![("Node", 1), ("KVS", 3)],
        };
        assert_eq!(
            inspect_text(&info),
            "ID           2-5-1477944140022\nSize         667\nIndex        5\nTerm         2\nVersion      1\n\n\
             Type         Count\n----         -----\nNode         1\nKVS          3\n----         -----\nTotal        4\n"
        );
    }

    #[test]
    fn one_file_argument_is_required() {
        assert_eq!(file_argument(&[]).unwrap_err(), "Missing FILE argument");
        let two = ["a".to_owned(), "b".to_owned()];
        assert_eq!(file_argument(&two).unwrap_err(), "Too many arguments (expected 1, got 2)");
    }
}
