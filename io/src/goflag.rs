//! Go's `flag` dialect over clap: [`normalize`] rewrites a command line as Go's `flag` package
//! reads it into the one canonical form clap reads unambiguously.
//!
//! Consul's flags are Go-style: one dash for long names (`-dev`, `-http-addr=...`), two dashes
//! accepted too, a value in the next argument whatever it looks like (`-http-port -1`), booleans
//! that never take the next argument, and flag parsing that ends at the first positional
//! argument. clap speaks GNU style. Which flags exist, take a value or are booleans, and which
//! words are subcommands, is read off the clap definition itself, so the two never disagree.
//!
//! This module depends on clap and std only: the fuzz crate compiles it in by path
//! (`fuzz/fuzz_targets/flags.rs`).

use std::ffi::OsString;

/// A command line Go's `flag` package would refuse, in its words (`flag provided but not
/// defined: -bogus`), which Consul prints before its usage text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlagError {
    /// `---x` or `-=x`.
    Syntax(String),
    /// A flag the command does not have.
    Undefined(String),
    /// A flag that takes a value, last on the line.
    NeedsArgument(String),
    /// A boolean flag given something `strconv.ParseBool` refuses.
    Boolean {
        /// The flag, as written.
        name: String,
        /// The value.
        value: String,
    },
}

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlagError::Syntax(text) => write!(f, "bad flag syntax: {text}"),
            FlagError::Undefined(name) => write!(f, "flag provided but not defined: -{name}"),
            FlagError::NeedsArgument(name) => write!(f, "flag needs an argument: -{name}"),
            FlagError::Boolean { name, value } => {
                write!(f, "invalid boolean value {value:?} for -{name}: parse error")
            }
        }
    }
}

impl std::error::Error for FlagError {}

/// Rewrites `args` (the program name first) as Go's `flag` package reads them for `root`, into
/// the canonical form clap reads unambiguously, so that every form a Consul user writes parses:
/// - `-f`, `--f`: one dash or two;
/// - `-f=v`, `-f v`: a flag that takes a value takes the next argument whatever it looks like
///   (`-http-port -1`, `-retry-join 10.0.0.1`); it becomes `--f=v`;
/// - booleans never take the next argument: `-f`, `-f=true`, `-f=false`, and every spelling
///   `strconv.ParseBool` knows (`1`, `t`, `TRUE`, `0`, `F`...). A flag clap sets to true
///   becomes `--f` or is dropped for false; a flag with an optional value (`-shell=false`,
///   the agent's flags that override files) gets `--f=true` or `--f=false`;
/// - flag parsing ends at the first positional argument of the command, or at `--`: a `--` is
///   put before it, so what follows is taken as it stands (`muster kv put k -Xmx512m` stores
///   `-Xmx512m`; `muster lock app ./run -verbose` passes `-verbose` to `./run`).
///
/// `root` must be built (`clap::Command::build`), so that the generated `-h`/`-help` flags are
/// among each command's arguments.
pub(crate) fn normalize(
    root: &clap::Command,
    args: impl IntoIterator<Item = OsString>,
) -> Result<Vec<OsString>, FlagError> {
    let mut command = root;
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push("--".into());
            out.push(arg);
            break;
        };
        if text == "--" {
            out.push(arg);
            break;
        }
        if text.len() > 1 && text.starts_with('-') {
            out.extend(flag(command, &text, &mut args)?);
            continue;
        }
        if let Some(sub) = command.find_subcommand(&text) {
            command = sub;
            out.push(arg);
            continue;
        }
        // The command's first positional argument: flag parsing ends here.
        out.push("--".into());
        out.push(arg);
        break;
    }
    out.extend(args);
    Ok(out)
}

/// One flag (`text` starts with `-`), in clap's canonical form; a flag that takes its value
/// from the next argument takes it from `rest`.
fn flag(
    command: &clap::Command,
    text: &str,
    rest: &mut impl Iterator<Item = OsString>,
) -> Result<Option<OsString>, FlagError> {
    debug_assert!(text.len() > 1 && text.starts_with('-'));
    let bare = text.strip_prefix("--").unwrap_or(&text[1..]);
    if bare.is_empty() || bare.starts_with('-') || bare.starts_with('=') {
        return Err(FlagError::Syntax(text.to_owned()));
    }
    let (name, inline) = match bare.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (bare, None),
    };
    let Some(arg) = find_flag(command, name) else {
        return Err(FlagError::Undefined(name.to_owned()));
    };
    let long = arg.get_long().unwrap_or(name);
    let boolean = |value: &str| {
        parse_go_bool(value)
            .ok_or_else(|| FlagError::Boolean { name: name.to_owned(), value: value.to_owned() })
    };
    Ok(match kind(arg) {
        FlagKind::Help => Some("--help".into()),
        FlagKind::Switch => match inline.map(boolean).transpose()? {
            Some(false) => None,
            _ => Some(format!("--{long}").into()),
        },
        FlagKind::OptionalBool => {
            let on = inline.map(boolean).transpose()?.unwrap_or(true);
            Some(format!("--{long}={on}").into())
        }
        FlagKind::Value => {
            let value = match inline {
                Some(value) => OsString::from(value),
                None => rest.next().ok_or_else(|| FlagError::NeedsArgument(name.to_owned()))?,
            };
            let mut canonical = OsString::from(format!("--{long}="));
            canonical.push(value);
            Some(canonical)
        }
    })
}

/// How Go's `flag` package treats a flag, read off its clap definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `-h`, `-help`.
    Help,
    /// A boolean clap sets to true when present.
    Switch,
    /// A boolean with an optional value (`-shell=false`; the agent's flags that override files).
    OptionalBool,
    /// A flag that takes a value.
    Value,
}

/// How Go's `flag` package treats `arg`.
pub(crate) fn kind(arg: &clap::Arg) -> FlagKind {
    match arg.get_action() {
        clap::ArgAction::Help | clap::ArgAction::HelpShort | clap::ArgAction::HelpLong => FlagKind::Help,
        clap::ArgAction::SetTrue => FlagKind::Switch,
        _ if arg.get_num_args().is_some_and(|range| range.min_values() == 0) => FlagKind::OptionalBool,
        _ => FlagKind::Value,
    }
}

/// `command`'s flag named `name`: by its long name, an alias, or (Go has no short flags, so `-n`
/// is the long flag `n`) a one-letter short name.
pub(crate) fn find_flag<'c>(command: &'c clap::Command, name: &str) -> Option<&'c clap::Arg> {
    command.get_arguments().filter(|arg| !arg.is_positional()).find(|arg| {
        arg.get_long() == Some(name)
            || arg.get_all_aliases().is_some_and(|aliases| aliases.contains(&name))
            || (name.chars().count() == 1 && arg.get_short() == name.chars().next())
    })
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
