//! The Go-`flag` dialect over clap (`io/src/goflag.rs`): arbitrary argument vectors through
//! `normalize` for a command tree with a flag of every kind it knows (help, switch, optional
//! boolean, value, repeated, aliased, one-letter, negative numbers) and nested subcommands.
//!
//! - `normalize` never panics; what it refuses, it refuses in Go's words;
//! - clap's parse of what it accepts never panics, and never meets a flag it does not know or a
//!   value without its `=` (everything before the `--` it puts in is a canonical flag or a
//!   subcommand);
//! - its output is a fixed point: normalized again, a UTF-8 command line is unchanged.
//!
//! The module is compiled in by path: it depends on clap and std only.

#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;

#[path = "../../io/src/goflag.rs"]
#[allow(dead_code)]
mod goflag;

fuzz_target!(|args: Vec<Vec<u8>>| {
    let command = command();
    let argv: Vec<OsString> =
        std::iter::once(OsString::from("muster")).chain(args.into_iter().map(OsString::from_vec)).collect();
    let utf8 = argv.iter().all(|arg| arg.to_str().is_some());
    let normalized = match goflag::normalize(command, argv) {
        Ok(normalized) => normalized,
        Err(error) => {
            let text = error.to_string();
            assert!(GO_ERRORS.iter().any(|prefix| text.starts_with(prefix)), "not Go's words: {text}");
            return;
        }
    };
    assert_eq!(normalized.first().map(OsString::as_os_str), Some("muster".as_ref()));
    if utf8 {
        let again = goflag::normalize(command, normalized.clone()).expect("its own output is accepted");
        assert_eq!(again, normalized, "normalizing twice changes nothing");
    }
    let separated = normalized.iter().any(|arg| arg == "--");
    if let Err(error) = command.clone().try_get_matches_from(&normalized) {
        use clap::error::ErrorKind;
        assert_ne!(error.kind(), ErrorKind::NoEquals, "{normalized:?}: {error}");
        // With no `--`, every word was a flag normalize knew or a subcommand it found.
        if !separated {
            assert_ne!(error.kind(), ErrorKind::UnknownArgument, "{normalized:?}: {error}");
            assert_ne!(error.kind(), ErrorKind::InvalidSubcommand, "{normalized:?}: {error}");
        }
    }
});

/// The beginnings of every error Go's `flag` package gives.
const GO_ERRORS: [&str; 4] = [
    "bad flag syntax: ",
    "flag provided but not defined: -",
    "flag needs an argument: -",
    "invalid boolean value ",
];

/// A command tree with a flag of each kind, built once (and built: `-h`/`-help` are among the
/// arguments, as `normalize` expects).
fn command() -> &'static clap::Command {
    static COMMAND: std::sync::OnceLock<clap::Command> = std::sync::OnceLock::new();
    COMMAND.get_or_init(|| {
        use clap::{Arg, ArgAction, Command};
        let switch = |name: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue);
        let optional_bool = |name: &'static str| {
            Arg::new(name)
                .long(name)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_parser(clap::value_parser!(bool))
        };
        let value = |name: &'static str| Arg::new(name).long(name);
        let positionals = || Arg::new("args").num_args(0..).action(ArgAction::Append);
        let http = |command: Command| {
            command.arg(value("http-addr")).arg(value("token")).arg(value("datacenter")).arg(switch("stale"))
        };
        let agent = Command::new("agent")
            .arg(switch("dev"))
            .arg(optional_bool("server"))
            .arg(value("node"))
            .arg(value("http-port").allow_negative_numbers(true).value_parser(clap::value_parser!(i32)))
            .arg(value("join").alias("retry-join").action(ArgAction::Append))
            .arg(value("node-meta").action(ArgAction::Append));
        let put = http(Command::new("put"))
            .arg(value("flags").value_parser(clap::value_parser!(u64)))
            .arg(switch("cas"))
            .arg(positionals());
        let kv = Command::new("kv")
            .subcommand_required(true)
            .subcommand(put)
            .subcommand(http(Command::new("get")).arg(switch("recurse")).arg(positionals()));
        let lock = http(Command::new("lock"))
            .arg(Arg::new("n").short('n').long("n").value_parser(clap::value_parser!(u32)))
            .arg(optional_bool("shell"))
            .arg(positionals());
        let raft = Command::new("raft")
            .subcommand_required(true)
            .subcommand(http(Command::new("list-peers")))
            .subcommand(http(Command::new("remove-peer")).arg(value("id")).arg(value("address")));
        let operator = Command::new("operator").subcommand_required(true).subcommand(raft);
        let mut root = Command::new("muster")
            .disable_version_flag(true)
            .args_override_self(true)
            .subcommand_required(true)
            .subcommands([agent, kv, lock, operator]);
        root.build();
        root
    })
}
