//! `muster validate`: the configuration files read as the agent would read them.

use muster::{config, http};

use super::{CliError, Outcome};
use crate::cli;

/// `muster validate`: reads the files as the agent would and says whether they are usable.
pub(crate) fn validate(args: &cli::ValidateArgs) -> Outcome {
    let paths = args
        .paths
        .iter()
        .map(|p| if p.is_dir() { config::Source::Dir(p.clone()) } else { config::Source::File(p.clone()) })
        .collect();
    let format = args.config_format.as_deref().map(config::Format::parse).transpose();
    let checked = format
        .and_then(|format| config::load(&config::Sources { paths, format, ..config::Sources::default() }))
        .map_err(http::DefinitionError::from);
    let checked = checked.and_then(|file| {
        let scripts =
            file.enable_script_checks.unwrap_or(false) || file.enable_local_script_checks.unwrap_or(false);
        Ok((file.warnings.clone(), http::definitions(&file, scripts)?))
    });
    match checked {
        Ok((warnings, _)) => {
            // Consul's validate: each warning on stderr, then the verdict.
            for warning in warnings {
                eprintln!("{warning}");
            }
            if !args.quiet {
                println!("Configuration is valid!");
            }
            Ok(0)
        }
        Err(source) => Err(CliError::Definitions { doing: "Config validation failed", source }),
    }
}
