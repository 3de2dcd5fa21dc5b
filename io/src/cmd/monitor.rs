//! `muster monitor [-log-level=info] [-log-json]`: the agent's log, streamed from `/v1/agent/monitor`
//! until Ctrl-C or until the agent goes away.

use std::io::{BufRead, BufReader, Write};

use clap::Args;

use super::{CliError, Client, ClientError, HttpArgs, Outcome};

#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The least severe level shown: trace, debug, info, warn or err.
    #[arg(long = "log-level", default_value = "info")]
    log_level: String,
    /// Streams the log as JSON lines (`?logjson`), as the agent's `-log-json` writes them.
    #[arg(long = "log-json")]
    log_json: bool,
    args: Vec<String>,
}

pub(crate) fn monitor(args: &MonitorArgs) -> Outcome {
    super::at_most(&args.args, 0)?;
    let client = Client::new(&args.http)?;
    let mut query = vec![("loglevel", args.log_level.as_str())];
    if args.log_json {
        query.push(("logjson", "true"));
    }
    let (status, body) =
        client.get_stream("/v1/agent/monitor", &query).map_err(CliError::client("Error starting monitor"))?;
    if status != 200 {
        return Err(CliError::client("Error starting monitor")(ClientError::unexpected(status, body)));
    }
    let mut stdout = std::io::stdout().lock();
    let mut reader = BufReader::new(body);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A log line is text, but a bad byte must not end the stream.
        let text = String::from_utf8_lossy(&line);
        // A closed pipe (`muster monitor | head`) ends the command quietly.
        if writeln!(stdout, "{}", text.trim_end_matches('\n')).and_then(|()| stdout.flush()).is_err() {
            return Ok(0);
        }
    }
    // Consul prints this to stdout, and so does muster.
    let _ = writeln!(
        stdout,
        "Remote side ended the monitor! This usually means that the remote side has exited or crashed."
    );
    Ok(1)
}
