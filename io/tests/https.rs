//! The HTTPS API as a user sets it up from Consul's guides: certificates made by `muster tls`,
//! an agent with `ports.https` and a `tls` block (and the pre-1.12 top-level keys), then the
//! CLI with `-ca-file`, `-client-cert`, `-client-key` and their `CONSUL_*` variables, py-consul
//! over OpenSSL, and the refusals a client without the right certificate meets.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::{dev_agent, free_port, node_has_consul, python_has, NODE_MODULES};

/// A directory holding a CA (`consul-agent-ca.pem`), a server certificate
/// (`dc1-server-consul-0.pem`), a CLI certificate (`dc1-cli-consul-0.pem`), and a CLI
/// certificate from another CA (`dc1-cli-other-0.pem`), all made by `muster tls`.
struct Certificates(PathBuf);

impl Certificates {
    fn make(name: &str) -> Certificates {
        let dir = std::env::temp_dir().join(format!("muster-https-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for args in [
            &["tls", "ca", "create"][..],
            &["tls", "cert", "create", "-server"],
            &["tls", "cert", "create", "-cli"],
            &["tls", "ca", "create", "-domain", "other"],
            &["tls", "cert", "create", "-cli", "-domain", "other"],
        ] {
            let output =
                Command::new(env!("CARGO_BIN_EXE_muster")).args(args).current_dir(&dir).output().unwrap();
            assert!(output.status.success(), "muster {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Certificates(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }

    /// The CA, then the CLI certificate and its key: what a client needs.
    fn cli(&self) -> [String; 3] {
        ["consul-agent-ca.pem", "dc1-cli-consul-0.pem", "dc1-cli-consul-0-key.pem"]
            .map(|file| self.path(file))
    }

    /// The `tls` block of an agent serving HTTPS with the server certificate; `verify` asks
    /// clients for theirs.
    fn hcl(&self, verify: bool) -> String {
        format!(
            "-hcl=tls {{ defaults {{ ca_file = \"{}\" cert_file = \"{}\" key_file = \"{}\" }} \
             https {{ verify_incoming = {verify} }} }}",
            self.path("consul-agent-ca.pem"),
            self.path("dc1-server-consul-0.pem"),
            self.path("dc1-server-consul-0-key.pem"),
        )
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn muster(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
    command.args(args).env_remove("CONSUL_HTTP_ADDR").env_remove("CONSUL_HTTP_SSL");
    command.envs(env.iter().copied()).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_cli_speaks_https_with_the_certificates_muster_tls_made() {
    let certs = Certificates::make("cli");
    let https = free_port();
    let (_agent, http) = dev_agent(&[&format!("-https-port={https}"), &certs.hcl(true)]);
    let addr = format!("https://127.0.0.1:{https}");
    let [ca, cert, key] = certs.cli();

    // Flags, space and `=` forms.
    let put = muster(
        &[
            "kv",
            "put",
            "-http-addr",
            &addr,
            "-ca-file",
            &ca,
            "-client-cert",
            &cert,
            "-client-key",
            &key,
            "tls/key",
            "over-https",
        ],
        &[],
    );
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(stdout(&put), "Success! Data written to: tls/key\n");
    let flags = [
        format!("-http-addr={addr}"),
        format!("-ca-file={ca}"),
        format!("-client-cert={cert}"),
        format!("-client-key={key}"),
    ];
    let mut args: Vec<&str> = vec!["kv", "get"];
    args.extend(flags.iter().map(String::as_str));
    args.push("tls/key");
    let get = muster(&args, &[]);
    assert_eq!((stdout(&get).as_str(), get.status.code()), ("over-https\n", Some(0)), "{}", stderr(&get));

    // The environment, as Consul's client reads it: a bare address with CONSUL_HTTP_SSL.
    let bare = format!("127.0.0.1:{https}");
    let env = [
        ("CONSUL_HTTP_ADDR", bare.as_str()),
        ("CONSUL_HTTP_SSL", "true"),
        ("CONSUL_CACERT", ca.as_str()),
        ("CONSUL_CLIENT_CERT", cert.as_str()),
        ("CONSUL_CLIENT_KEY", key.as_str()),
    ];
    let get = muster(&["kv", "get", "tls/key"], &env);
    assert_eq!(stdout(&get), "over-https\n", "{}", stderr(&get));

    // The same store answers over plain HTTP.
    let plain = muster(&["kv", "get", &format!("-http-addr=127.0.0.1:{http}"), "tls/key"], &[]);
    assert_eq!(stdout(&plain), "over-https\n", "{}", stderr(&plain));

    // CONSUL_HTTP_SSL_VERIFY=false: no CA needed (Go's InsecureSkipVerify), the name unchecked.
    let unverified = format!("https://localhost:{https}");
    let env = [
        ("CONSUL_HTTP_ADDR", unverified.as_str()),
        ("CONSUL_HTTP_SSL_VERIFY", "false"),
        ("CONSUL_CLIENT_CERT", cert.as_str()),
        ("CONSUL_CLIENT_KEY", key.as_str()),
    ];
    let get = muster(&["kv", "get", "tls/key"], &env);
    assert_eq!(stdout(&get), "over-https\n", "{}", stderr(&get));
}

#[test]
fn clients_without_the_right_certificate_are_refused_in_gos_words() {
    let certs = Certificates::make("refusals");
    let https = free_port();
    let (_agent, _) = dev_agent(&[&format!("-https-port={https}"), &certs.hcl(true)]);
    let addr = format!("https://127.0.0.1:{https}");
    let url = format!("{addr}/v1/kv/k");
    let ca = certs.path("consul-agent-ca.pem");
    let refused = |args: &[&str], reason: &str| {
        let mut all = vec!["kv", "get", "-http-addr", &addr];
        all.extend_from_slice(args);
        all.push("k");
        let output = muster(&all, &[]);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", stdout(&output));
        assert_eq!(
            stderr(&output),
            format!("Error querying Consul agent: Get \"{url}\": {reason}\n"),
            "{args:?}"
        );
    };
    // No CA: the agent's certificate is from an unknown authority.
    refused(&[], "tls: failed to verify certificate: x509: certificate signed by unknown authority");
    // The CA, no client certificate: verify_incoming asks for one.
    refused(&["-ca-file", &ca], "remote error: tls: certificate required");
    // A client certificate another CA signed.
    let (other, other_key) = (certs.path("dc1-cli-other-0.pem"), certs.path("dc1-cli-other-0-key.pem"));
    refused(
        &["-ca-file", &ca, "-client-cert", &other, "-client-key", &other_key],
        "remote error: tls: unknown certificate authority",
    );
    // Plain HTTP to the HTTPS port gets no answer it can read.
    let plain = muster(&["kv", "get", &format!("-http-addr=127.0.0.1:{https}"), "k"], &[]);
    assert_eq!(plain.status.code(), Some(1));
}

/// The pre-1.12 top-level keys in a JSON file (`ca_file`, `cert_file`, `key_file`,
/// `verify_incoming_https`), as older guides write them, serve the same HTTPS; and a client
/// that connects and never says hello is let go after `limits.https_handshake_timeout`.
#[test]
fn the_older_top_level_keys_serve_https_and_a_silent_client_is_let_go() {
    let certs = Certificates::make("legacy");
    let https = free_port();
    let file = certs.0.join("agent.json");
    let json = serde_json::json!({
        "ports": {"https": https},
        "ca_file": certs.path("consul-agent-ca.pem"),
        "cert_file": certs.path("dc1-server-consul-0.pem"),
        "key_file": certs.path("dc1-server-consul-0-key.pem"),
        "verify_incoming_https": true,
        "limits": {"https_handshake_timeout": "300ms"},
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let (_agent, _) = dev_agent(&[&format!("-config-file={}", file.display())]);
    let addr = format!("https://127.0.0.1:{https}");
    let ca = certs.path("consul-agent-ca.pem");
    let without_cert = muster(&["members", "-http-addr", &addr, "-ca-file", &ca], &[]);
    assert!(
        stderr(&without_cert).ends_with("remote error: tls: certificate required\n"),
        "{}",
        stderr(&without_cert)
    );
    let (cert, key) = (certs.path("dc1-cli-consul-0.pem"), certs.path("dc1-cli-consul-0-key.pem"));
    let members = muster(
        &["members", "-http-addr", &addr, "-ca-file", &ca, "-client-cert", &cert, "-client-key", &key],
        &[],
    );
    assert!(stdout(&members).contains("client-test"), "{}", stderr(&members));

    let mut silent = std::net::TcpStream::connect(("127.0.0.1", https)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let read = silent.read(&mut [0u8; 16]);
    assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}, not the 300ms asked for");
}

/// py-consul (requests over OpenSSL) with `scheme="https"`, the CA to verify with, and a
/// client certificate, unmodified.
#[test]
fn py_consul_speaks_https_unmodified() {
    if !python_has("consul") {
        return;
    }
    let certs = Certificates::make("py");
    let https = free_port();
    let (_agent, _) = dev_agent(&[&format!("-https-port={https}"), &certs.hcl(true)]);
    let script = r#"
import sys, consul, requests
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = consul.Consul(host="127.0.0.1", port=port, scheme="https", verify=ca, cert=(cert, key))
assert c.kv.put("py/tls", "yes") is True
index, entry = c.kv.get("py/tls")
assert entry["Value"] == b"yes", entry
assert c.status.leader() != ""
try:
    consul.Consul(host="127.0.0.1", port=port, scheme="https", verify=ca).kv.get("py/tls")
    raise SystemExit("a client without a certificate was served")
except requests.exceptions.SSLError:
    pass
try:
    consul.Consul(host="127.0.0.1", port=port, scheme="https", cert=(cert, key)).kv.get("py/tls")
    raise SystemExit("the agent's certificate passed without its CA")
except requests.exceptions.SSLError:
    pass
print("https answered as Consul answers")
"#;
    let output =
        Command::new("python3").args(["-c", script, &https.to_string()]).args(certs.cli()).output().unwrap();
    assert!(output.status.success(), "py-consul failed:\n{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("https answered as Consul answers"), "{}", stdout(&output));
}

/// A reload (`muster reload`, as SIGHUP) reads the certificate files again: a new CA and server
/// certificate put where the old ones were serve the next connections; files that do not load
/// fail the reload in Consul's words and leave the ones in use serving.
#[test]
fn a_reload_replaces_the_certificates_and_a_bad_one_changes_nothing() {
    let certs = Certificates::make("reload");
    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["tls", "cert", "create", "-server", "-domain", "other"])
        .current_dir(&certs.0)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let install = |ca: &str, cert: &str, key: &str| {
        for (from, to) in [(ca, "ca.pem"), (cert, "server.pem"), (key, "server-key.pem")] {
            std::fs::copy(certs.0.join(from), certs.0.join(to)).unwrap();
        }
    };
    install("consul-agent-ca.pem", "dc1-server-consul-0.pem", "dc1-server-consul-0-key.pem");
    let https = free_port();
    let file = certs.0.join("agent.json");
    let json = serde_json::json!({
        "ports": {"https": https},
        "tls": {
            "defaults": {"ca_file": certs.path("ca.pem"), "cert_file": certs.path("server.pem"), "key_file": certs.path("server-key.pem")},
            "https": {"verify_incoming": true},
        },
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let (_agent, http) = dev_agent(&[&format!("-config-file={}", file.display())]);
    let addr = format!("https://127.0.0.1:{https}");
    let members = |domain: &str| {
        let (ca, cert, key) = (
            certs.path(&format!("{domain}-agent-ca.pem")),
            certs.path(&format!("dc1-cli-{domain}-0.pem")),
            certs.path(&format!("dc1-cli-{domain}-0-key.pem")),
        );
        muster(
            &["members", "-http-addr", &addr, "-ca-file", &ca, "-client-cert", &cert, "-client-key", &key],
            &[],
        )
    };
    let reload = || muster(&["reload", &format!("-http-addr=127.0.0.1:{http}")], &[]);
    assert!(members("consul").status.success(), "{}", stderr(&members("consul")));
    assert!(!members("other").status.success());

    install("other-agent-ca.pem", "dc1-server-other-0.pem", "dc1-server-other-0-key.pem");
    let reloaded = reload();
    assert_eq!(stdout(&reloaded), "Configuration reload triggered\n", "{}", stderr(&reloaded));
    assert!(members("other").status.success(), "{}", stderr(&members("other")));
    let old = members("consul");
    assert!(stderr(&old).ends_with("certificate signed by unknown authority\n"), "{}", stderr(&old));

    std::fs::write(certs.0.join("server.pem"), "not a certificate\n").unwrap();
    let refused = reload();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains(
            "Failed reloading tls configuration: Failed to load cert/key pair: tls: failed to find any PEM data in certificate input"
        ),
        "{}",
        stderr(&refused)
    );
    assert!(
        members("other").status.success(),
        "the certificates in use keep serving: {}",
        stderr(&members("other"))
    );
}

/// `muster template` with consul-template's `-consul-ssl*` flags renders from an agent that
/// serves HTTPS only to holders of a client certificate.
#[test]
fn muster_template_renders_over_https_with_consul_templates_flags() {
    let certs = Certificates::make("template");
    let https = free_port();
    let (_agent, http) = dev_agent(&[&format!("-https-port={https}"), &certs.hcl(true)]);
    let put =
        muster(&["kv", "put", &format!("-http-addr=127.0.0.1:{http}"), "app/upstream", "10.0.0.7:8080"], &[]);
    assert!(put.status.success(), "{}", stderr(&put));
    let source = certs.0.join("in.ctmpl");
    std::fs::write(&source, "server {{ key \"app/upstream\" }};\n").unwrap();
    let template = format!("-template={}:{}", source.display(), certs.0.join("out.conf").display());
    let [ca, cert, key] = certs.cli();
    let addr = format!("127.0.0.1:{https}");
    let rendered = muster(
        &[
            "template",
            "-once",
            "-dry",
            "-consul-addr",
            &addr,
            "-consul-ssl",
            "-consul-ssl-ca-cert",
            &ca,
            "-consul-ssl-cert",
            &cert,
            "-consul-ssl-key",
            &key,
            &template,
        ],
        &[],
    );
    let expected = format!("> {}\nserver 10.0.0.7:8080;\n\n", certs.0.join("out.conf").display());
    assert_eq!(stdout(&rendered), expected, "{}", stderr(&rendered));
    // -consul-ssl-verify=false: no CA needed.
    let unverified = muster(
        &[
            "template",
            "-once",
            "-dry",
            "-consul-addr",
            &addr,
            "-consul-ssl",
            "-consul-ssl-verify=false",
            "-consul-ssl-cert",
            &cert,
            "-consul-ssl-key",
            &key,
            &template,
        ],
        &[],
    );
    assert_eq!(stdout(&unverified), expected, "{}", stderr(&unverified));
}

/// The `consul` npm package (Node's https, OpenSSL) with `secure: true`, the CA, and a client
/// certificate, unmodified; without the certificate its request fails.
#[test]
fn the_node_consul_package_speaks_https_unmodified() {
    if !node_has_consul() {
        return;
    }
    let certs = Certificates::make("node");
    let https = free_port();
    let (_agent, _) = dev_agent(&[&format!("-https-port={https}"), &certs.hcl(true)]);
    let script = r#"
const fs = require("fs");
const assert = require("assert");
const Consul = require("consul");
const [port, ca, cert, key] = process.argv.slice(1);
async function main() {
  const tls = { ca: [fs.readFileSync(ca)], cert: fs.readFileSync(cert), key: fs.readFileSync(key) };
  const consul = new Consul({ host: "127.0.0.1", port: Number(port), secure: true, ...tls });
  assert.strictEqual(await consul.kv.set("node/tls", "yes"), true);
  assert.strictEqual((await consul.kv.get("node/tls")).Value, "yes");
  const anonymous = new Consul({ host: "127.0.0.1", port: Number(port), secure: true, ca: tls.ca });
  await assert.rejects(anonymous.kv.get("node/tls"));
  console.log("https answered as Consul answers");
}
main().catch((error) => { console.error(error); process.exit(1); });
"#;
    let output = Command::new("node")
        .args(["-e", script, &https.to_string()])
        .args(certs.cli())
        .env("NODE_PATH", NODE_MODULES)
        .output()
        .unwrap();
    assert!(output.status.success(), "node consul failed:\n{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("https answered as Consul answers"), "{}", stdout(&output));
}
