//! `muster keyring -list|-list-primary|-install|-use|-remove` (`../shared/reference/
//! consul-behaviour.md` §4.2): gossip key rotation across every member, through
//! `/v1/operator/keyring`.

use std::collections::BTreeMap;

use clap::Args;
use serde::Deserialize;

use super::{CliError, Client, HttpArgs, Outcome};

#[derive(Debug, Args)]
pub(crate) struct KeyringArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Lists the keys installed on the members, with how many hold each.
    #[arg(long)]
    list: bool,
    /// Lists the primary keys (the ones members encrypt with) only.
    #[arg(long = "list-primary")]
    list_primary: bool,
    /// Installs a new key on every member.
    #[arg(long, default_value = "")]
    install: String,
    /// Makes an installed key the primary (the one that encrypts) on every member.
    #[arg(long = "use", default_value = "")]
    use_key: String,
    /// Removes a key from every member (not the primary).
    #[arg(long, default_value = "")]
    remove: String,
    /// Lists this datacenter's pool only, with no WAN traffic (with -list or -list-primary).
    #[arg(long = "local-only")]
    local_only: bool,
    /// How many members relay each answer (0 to 5); accepted for Consul's scripts.
    #[arg(long = "relay-factor", default_value = "0")]
    relay_factor: String,
    args: Vec<String>,
}

/// One pool's answer, as `/v1/operator/keyring` lists it (Consul's `KeyringResponse`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PoolKeys {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    keys: BTreeMap<String, usize>,
    #[serde(default)]
    primary_keys: BTreeMap<String, usize>,
    num_nodes: usize,
    #[serde(default)]
    num_resp: usize,
    #[serde(default)]
    messages: BTreeMap<String, String>,
}

pub(crate) fn keyring(args: &KeyringArgs) -> Outcome {
    if !args.args.is_empty() {
        return Err(CliError::Usage(format!("Too many arguments (expected 0, got {})", args.args.len())));
    }
    match args.relay_factor.parse::<u8>() {
        Ok(factor) if factor <= 5 => {}
        Ok(_) => {
            return Err(CliError::usage("Error parsing relay factor: Relay factor must be in range: [0, 5]"))
        }
        Err(error) => return Err(CliError::Usage(format!("Error parsing relay factor: {error}"))),
    }
    let actions = [
        args.list || args.list_primary,
        !args.install.is_empty(),
        !args.use_key.is_empty(),
        !args.remove.is_empty(),
    ];
    match actions.iter().filter(|&&a| a).count() {
        0 => return Err(CliError::usage("Must specify one action")),
        1 => {}
        _ => return Err(CliError::usage("Only a single action is allowed")),
    }
    if args.local_only && !(args.list || args.list_primary) {
        return Err(CliError::usage("Cannot use -local-only with anything but -list or -list-primary"));
    }
    let client = Client::new(&args.http)?;
    if args.list || args.list_primary {
        println!("==> Gathering installed encryption keys...");
        let query: &[(&str, &str)] = if args.local_only { &[("local-only", "true")] } else { &[] };
        let pools: Vec<PoolKeys> = client
            .get("/v1/operator/keyring", query)
            .and_then(|reply| reply.json())
            .map_err(CliError::client("error"))?;
        print!("{}", list_text(&pools, args.list_primary));
        // A member that failed or did not answer: Consul's exit code 1 (its listing may miss keys).
        let incomplete = pools.iter().any(|p| !p.messages.is_empty() || p.num_resp < p.num_nodes);
        return Ok(u8::from(incomplete));
    }
    let (method, key, doing) = if !args.install.is_empty() {
        ("POST", &args.install, "==> Installing new gossip encryption key...")
    } else if !args.use_key.is_empty() {
        ("PUT", &args.use_key, "==> Changing primary gossip encryption key...")
    } else {
        ("DELETE", &args.remove, "==> Removing gossip encryption key...")
    };
    println!("{doing}");
    let body = serde_json::json!({ "Key": key }).to_string();
    let reply = match method {
        "POST" => client.post_body("/v1/operator/keyring", body.as_bytes()),
        "PUT" => client.put("/v1/operator/keyring", &[], body.as_bytes()),
        _ => client.delete_body("/v1/operator/keyring", body.as_bytes()),
    };
    reply.and_then(|reply| reply.ok()).map_err(CliError::client("error"))?;
    Ok(0)
}

/// Consul's listing: each pool, then each key with `[holders/members]`, then any member's
/// error.
fn list_text(pools: &[PoolKeys], primary: bool) -> String {
    let mut out = String::new();
    for pool in pools {
        let name = if pool.wan { "WAN".to_owned() } else { format!("{} (LAN)", pool.datacenter) };
        out.push_str(&format!("\n{name}:\n"));
        let keys = if primary { &pool.primary_keys } else { &pool.keys };
        for (key, holders) in keys {
            out.push_str(&format!("  {key} [{holders}/{}]\n", pool.num_nodes));
        }
        for (node, message) in &pool.messages {
            out.push_str(&format!("  {node}: {message}\n"));
        }
    }
    out
}

/// `muster keygen`: 32 random bytes from the operating system, base64 encoded.
pub(crate) fn keygen() -> Outcome {
    use base64::Engine;
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut key))
        .map_err(CliError::io("Error reading random data"))?;
    println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_listed_by_pool_with_holders_out_of_members() {
        let pools: Vec<PoolKeys> = serde_json::from_str(
            r#"[{"WAN": true, "Datacenter": "dc1", "Keys": {"a2V5": 3}, "NumNodes": 3, "NumResp": 3},
                {"WAN": false, "Datacenter": "dc1", "Keys": {"a2V5": 4, "bmV3": 2}, "NumNodes": 4, "NumResp": 4,
                 "Messages": {"c1": "key is already installed"}}]"#,
        )
        .unwrap();
        assert_eq!(list_text(&pools, true), "\nWAN:\n\ndc1 (LAN):\n  c1: key is already installed\n");
        assert_eq!(
            list_text(&pools, false),
            "\nWAN:\n  a2V5 [3/3]\n\ndc1 (LAN):\n  a2V5 [4/4]\n  bmV3 [2/4]\n  c1: key is already installed\n"
        );
    }
}
