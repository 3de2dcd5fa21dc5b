//! The `muster` binary.

use std::process::ExitCode;

mod agent;
mod allocator;
mod cli;
mod cmd;
mod goflag;

fn main() -> ExitCode {
    let args = match cli::normalize(std::env::args_os()) {
        Ok(args) => args,
        Err(error) => {
            // Go's flag package prints its error, then the command's usage; Consul exits 1.
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let parsed =
        <cli::Cli as clap::CommandFactory>::command().try_get_matches_from(args).and_then(|matches| {
            <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches).map(|cli| (cli, matches))
        });
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            match cli::consul_usage_error(&error) {
                // Consul's words for what its scripts match on, then the usage clap prints.
                Some(message) => eprintln!(
                    "{message}\n{}",
                    error
                        .render()
                        .to_string()
                        .lines()
                        .filter(|l| l.starts_with("Usage:"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                None => {
                    let _ = error.print();
                }
            }
            // Consul exits 1 on a usage error; help itself is a success.
            return if error.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        cli::Subcommands::Version(args) => finish(cmd::version::version(&args)),
        cli::Subcommands::Keygen => finish(cmd::keyring::keygen()),
        cli::Subcommands::Validate(args) => finish(cmd::validate::validate(&args)),
        cli::Subcommands::Members(args) => finish(cmd::cluster::members(&args)),
        cli::Subcommands::Info(args) => finish(cmd::cluster::info(&args)),
        cli::Subcommands::Join(args) => finish(cmd::cluster::join(&args)),
        cli::Subcommands::Leave(args) => finish(cmd::cluster::leave(&args)),
        cli::Subcommands::ForceLeave(args) => finish(cmd::cluster::force_leave(&args)),
        cli::Subcommands::Reload(args) => finish(cmd::cluster::reload(&args)),
        cli::Subcommands::Maint(args) => finish(cmd::cluster::maint(&args)),
        cli::Subcommands::Monitor(args) => finish(cmd::monitor::monitor(&args)),
        cli::Subcommands::Event(args) => finish(cmd::cluster::event(&args)),
        cli::Subcommands::Keyring(args) => finish(cmd::keyring::keyring(&args)),
        cli::Subcommands::Kv(command) => finish(cmd::kv::run(command)),
        cli::Subcommands::Catalog(command) => finish(cmd::catalog::run(command)),
        cli::Subcommands::Operator(command) => finish(cmd::catalog::operator(command)),
        cli::Subcommands::Snapshot(command) => finish(cmd::snapshot::run(command)),
        cli::Subcommands::Watch(args) => finish(cmd::watch::watch(&args)),
        cli::Subcommands::Lock(args) => finish(cmd::lock::lock(&args)),
        cli::Subcommands::Exec(args) => finish(cmd::exec::exec(&args)),
        cli::Subcommands::Services(command) => finish(cmd::services::run(command)),
        cli::Subcommands::Tls(command) => finish(cmd::tls::run(command)),
        cli::Subcommands::Acl(command) => finish(cmd::acl::run(command)),
        cli::Subcommands::Template(args) => finish(cmd::template::run(&args)),
        cli::Subcommands::Debug(args) => finish(cmd::debug::debug(&args)),
        cli::Subcommands::Agent(args) => agent::main(*args, matches.subcommand_matches("agent")),
    }
}

/// A client command's exit: its code, or why it failed on stderr and 1 (Consul's `UI.Error`).
/// The one place a command's error is printed.
fn finish(outcome: cmd::Outcome) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(1)
        }
    }
}
