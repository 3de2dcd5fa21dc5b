//! `muster monitor [-log-level=info]`: the agent's log, streamed from `/v1/agent/monitor`
//! until Ctrl-C or until the agent goes away.

use std::io::{BufRead, BufReader, Write};

use clap::Args;

use super::{Client, HttpArgs, Outcome};

#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The least severe level shown: trace, debug, info, warn or err.
    #[arg(long = "log-level", default_value = "info")]
    log_level: String,
    args: Vec<String>,
}

pub(crate) fn monitor(args: &MonitorArgs) -> Outcome {
    super::at_most(&args.args, 0)?;
    let client = Client::new(&args.http)?;
    let (status, body) = client
        .get_stream("/v1/agent/monitor", &[("loglevel", &args.log_level)])
        .map_err(|error| format!("Error starting monitor: {error}"))?;
    if status != 200 {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(body, 4096), &mut text);
        return Err(format!(
            "Error starting monitor: Unexpected response code: {status} ({})",
            text.trim_end()
        ));
    }
    let mut stdout = std::io::stdout().lock();
    for line in BufReader::new(body).lines() {
        let Ok(line) = line else { break };
        // A closed pipe (`muster monitor | head`) ends the command quietly.
        if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
            return Ok(0);
        }
    }
    eprintln!(
        "Remote side ended the monitor! This usually means that the remote side has exited or crashed."
    );
    Ok(1)
}
