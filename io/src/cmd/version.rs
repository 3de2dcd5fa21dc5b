//! `muster version [-format=pretty|json]`: what `muster version` prints, or Consul's
//! `VersionInfo` as JSON for scripts (`Version` is the Consul release muster reproduces, as
//! `/v1/agent/self` reports it).

use clap::Args;
use muster::version;

use super::{CliError, Outcome};

#[derive(Debug, Args)]
pub(crate) struct VersionArgs {
    /// The output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
}

pub(crate) fn version(args: &VersionArgs) -> Outcome {
    match args.format.as_str() {
        "pretty" => print!("{}", version::version_text()),
        "json" => println!("{}", version_json()),
        other => return Err(CliError::Usage(format!("Unknown format: {other}"))),
    }
    Ok(0)
}

/// Consul's `VersionInfo`, as `json.MarshalIndent(info, "", "   ")` writes it.
fn version_json() -> String {
    use serde::Serialize;
    let info = serde_json::json!({
        "Version": version::CONSUL_COMPATIBLE_VERSION,
        "Revision": version::GIT_REVISION,
        "Prerelease": "",
        "BuildDate": BUILD_DATE,
        "RPC": {
            "Default": version::PROTOCOL_DEFAULT,
            "Min": version::PROTOCOL_MIN,
            "Max": version::PROTOCOL_MAX,
        },
    });
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    info.serialize(&mut serializer).expect("JSON values serialize");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The build date muster reports (Consul's `version.BuildDate` default, as
/// `/v1/agent/version` answers it): no date is stamped into the build.
const BUILD_DATE: &str = "1970-01-01T00:00:01Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_consuls_keys_in_consuls_order_and_indent() {
        let text = version_json();
        let keys: Vec<&str> = text.lines().filter_map(|line| line.trim().split('"').nth(1)).collect();
        assert_eq!(keys, ["Version", "Revision", "Prerelease", "BuildDate", "RPC", "Default", "Min", "Max"]);
        assert!(text.starts_with("{\n   \"Version\": \"1.20.0\",\n"), "{text}");
    }
}
