//! Real Consul configuration files, collected from Consul's documentation, HashiCorp's tutorials
//! and tools, and client libraries' test set-ups (`io/tests/corpus/configs`, each traced to its
//! source in `MANIFEST.tsv`), read by the real binary as a user would: `muster validate <file>`.
//!
//! Each file's expected outcome is in the manifest:
//! - `start`: Consul 1.20 starts with it, so muster must accept it;
//! - `refuse: <text>`: Consul refuses it with this text, and so must muster;
//! - `secure: <what>`: it asks for protection muster does not give yet (TLS verification,
//!   auto-encrypt...), so muster refuses to start rather than run less secure than asked.

use std::path::Path;
use std::process::Command;

/// muster's words when it will not run less secure than a file asks.
const SECURE_REFUSAL: &str = "muster will not run less secure than this configuration asks";

/// The smallest corpus the test accepts: a manifest that lost its rows must not pass quietly.
const CORPUS_FILES_MIN: usize = 60;

#[test]
fn every_corpus_file_starts_or_is_refused_as_consul_would() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/configs");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for row in manifest.lines().skip(1).filter(|row| !row.trim().is_empty()) {
        let columns: Vec<&str> = row.split('\t').collect();
        let (file, expect) = (columns[0], columns[3]);
        count += 1;
        let output =
            Command::new(env!("CARGO_BIN_EXE_muster")).arg("validate").arg(dir.join(file)).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let passed = match expect.split_once(": ").map_or((expect, ""), |(kind, text)| (kind, text)) {
            ("start", _) => output.status.success() && stdout.contains("Configuration is valid!"),
            ("refuse", text) => output.status.code() == Some(1) && stderr.contains(text),
            ("secure", _) => output.status.code() == Some(1) && stderr.contains(SECURE_REFUSAL),
            (other, _) => panic!("{file}: unknown expectation {other:?}"),
        };
        if !passed {
            failures.push(format!(
                "{file}: expected {expect:?}, got {:?}\n{stdout}{stderr}",
                output.status.code()
            ));
        }
    }
    assert!(count >= CORPUS_FILES_MIN, "only {count} corpus files");
    assert!(failures.is_empty(), "{} of {count} corpus files:\n{}", failures.len(), failures.join("\n"));
}
