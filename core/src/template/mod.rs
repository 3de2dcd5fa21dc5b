//! consul-template's template language: Go's `text/template` plus consul-template's function
//! library, as a pure module.
//!
//! A [`Template`] is parsed once and rendered many times. Each render walks the template over a
//! data [`Value`] and asks a [`Source`] for the data of every query function (`service`, `key`,
//! `ls`, …) it meets. The source answers from what the driver has fetched so far, or says it has
//! nothing yet; the render then goes on with an empty result and records the [`Dependency`] as
//! missing, exactly as consul-template's "brain" does. The driver starts watches for every
//! [`Rendered::used`] dependency, and writes the output only when [`Rendered::missing`] is empty.
//!
//! ```text
//!   driver ── Template::render(data, &mut source, &options) ──▶ Rendered { output, used, missing }
//!     ▲                         │ source.query(&Dependency) → Answer::{Ready, Pending}
//!     └── blocking queries for `used`; re-render on change; write when `missing` is empty
//! ```
//!
//! Nothing here does I/O: `env`, `file`, `writeToFile` and `plugin` go through the [`Source`]
//! too, and `timestamp` reads the time the driver put in [`RenderOptions::now_unix_nanos`].
//!
//! Limits (named below) bound nesting, output size, `loop` lengths, template recursion and the
//! total work of one render, so that a hostile template ends in an error, not a hang or a crash.

mod builtins;
mod dependency;
mod exec;
mod format;
mod helpers;
mod json;
mod lex;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use dependency::{Dependency, DependencyError, HealthFilter};
pub use value::{Record, Value};

/// A parsed template: the main tree and every `{{define}}`d or `{{block}}` tree.
#[derive(Clone, Debug)]
pub struct Template {
    name: String,
    /// The source text, for the line and column of execution errors.
    text: String,
    trees: BTreeMap<String, parse::List>,
}

/// The answer of a [`Source`] to a query function.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The data is known (for a key: `Value::String`, or `Value::Nil` when there is no such
    /// key).
    Ready(Value),
    /// The driver has no data for this dependency yet: the render goes on with an empty
    /// result and the output must not be used.
    Pending,
}

/// What `writeToFile` asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWrite {
    /// The destination path.
    pub path: String,
    /// The owner's user name or id ("" keeps the current one).
    pub user: String,
    /// The owner's group name or id ("" keeps the current one).
    pub group: String,
    /// The permissions, an octal string such as "0644".
    pub perms: String,
    /// Append instead of truncating (flag `append`).
    pub append: bool,
    /// Add a newline after the content (flag `newline`).
    pub newline: bool,
    /// The content.
    pub content: String,
}

/// The driver's side of a render: the data of query functions and the I/O helpers.
pub trait Source {
    /// The data for a query function's dependency, or [`Answer::Pending`].
    fn query(&mut self, dependency: &Dependency) -> Answer;

    /// The process environment variable `name` (`env`, `mustEnv`, `envOrDefault`).
    fn env(&mut self, name: &str) -> Option<String> {
        let _ = name;
        None
    }

    /// `writeToFile`: performs the write, or says why not.
    fn write_file(&mut self, write: &FileWrite) -> Result<(), String> {
        let _ = write;
        Err("writeToFile is not available".into())
    }

    /// `plugin`: runs the command with the arguments and returns its trimmed stdout.
    fn plugin(&mut self, command: &str, args: &[String]) -> Result<String, String> {
        let _ = (command, args);
        Err("plugin is not available".into())
    }
}

/// Per-render settings.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// The time `timestamp` prints, in nanoseconds since the Unix epoch (UTC).
    pub now_unix_nanos: i64,
    /// `error_on_missing_key`: a missing map key is an error (Go's `missingkey=error`).
    pub error_on_missing_key: bool,
    /// `function_denylist`: glob patterns (`*` only) of functions that fail when called.
    pub function_denylist: Vec<String>,
}

/// The result of one render.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    /// The text produced. Usable only when `missing` is empty.
    pub output: String,
    /// Every dependency the render asked for, in first-use order, without duplicates.
    pub used: Vec<Dependency>,
    /// The dependencies that had no data yet (or, for `key`, `safeLs` and `safeTree`, whose
    /// data holds the render back), in first-use order, without duplicates.
    pub missing: Vec<Dependency>,
}

/// A parse error, printed as Go prints it: `template: NAME:LINE: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template: {name}:{line}: {message}")]
pub struct ParseError {
    /// The template's name.
    pub name: String,
    /// The 1-based line Go names.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// An execution error, printed as Go prints it:
/// `template: NAME:LINE:COL: executing "NAME" at <.Foo>: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct ExecError {
    text: String,
}

impl ExecError {
    /// The whole message.
    pub fn message(&self) -> &str {
        &self.text
    }
}

impl Template {
    /// Parses `text` as the template `name`, with the delimiters (`("", "")` means `{{`/`}}`).
    pub fn parse(name: &str, text: &str, delims: (&str, &str)) -> Result<Template, ParseError> {
        if text.len() > TEMPLATE_BYTES_MAX {
            return Err(ParseError {
                name: name.to_string(),
                line: 1,
                message: format!("template is {} bytes, over the limit of {TEMPLATE_BYTES_MAX}", text.len()),
            });
        }
        let trees = parse::parse(name, text, delims, is_function)?;
        Ok(Template { name: name.to_string(), text: text.to_string(), trees })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of every template defined in the text (including the main one), sorted.
    pub fn defined_names(&self) -> Vec<&str> {
        self.trees.keys().map(String::as_str).collect()
    }

    /// Renders the template over `data`. See the module documentation for the contract.
    pub fn render(
        &self,
        data: &Value,
        source: &mut dyn Source,
        options: &RenderOptions,
    ) -> Result<Rendered, ExecError> {
        exec::render(self, data, source, options)
    }
}

/// Whether `name` is a function a template may call (checked at parse time, as Go does).
fn is_function(name: &str) -> bool {
    builtins::is_builtin(name) || helpers::is_helper(name)
}

/// The largest template text accepted (consul-template templates are config files, not data).
pub const TEMPLATE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The deepest nesting of control structures and parenthesised pipelines: the parser and the
/// executor recurse on it, so it bounds their stack use.
pub const PARSE_DEPTH_MAX: usize = 200;
/// The deepest chain of `{{template}}`/`executeTemplate` calls (Go allows 100,000, which would
/// overflow a Rust thread's stack long before).
pub const TEMPLATE_CALL_DEPTH_MAX: usize = 100;
/// The deepest the executor may be in control structures, pipelines and template calls at
/// once: each level is a few Rust stack frames, so this bounds the stack a render needs (Go's
/// template calls alone may nest 100,000 deep: its goroutine stacks grow, Rust's do not).
pub const EXEC_NESTING_MAX: usize = 1_000;
/// The deepest nesting `explode`/`explodeMap` may build (as `serde_json` bounds `parseJSON`).
pub const VALUE_DEPTH_MAX: usize = 128;
/// The most output one render may produce.
pub const OUTPUT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The most elements `loop` may produce.
pub const LOOP_LENGTH_MAX: i64 = 1_000_000;
/// The most evaluation steps (nodes walked, commands run, loop iterations) of one render:
/// nested `range`s over `loop`s are bounded by this, not by the output limit.
pub const EXEC_STEPS_MAX: u64 = 10_000_000;
/// The largest width or count `indent` and `printf` padding may ask for.
pub const PAD_MAX: usize = 1_000_000;
/// The largest string one function call may return (`printf`, `join`, `indent`, `replaceAll`, …):
/// each is checked before or while it is built, so growth by repeated calls stays bounded.
pub const RESULT_BYTES_MAX: usize = OUTPUT_BYTES_MAX;
/// How many bytes of function results count as one evaluation step (see [`EXEC_STEPS_MAX`]):
/// ten million steps then allow 160 MB of function output in one render.
pub const BYTES_PER_STEP: usize = 16;
