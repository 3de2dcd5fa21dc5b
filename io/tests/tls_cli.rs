//! `muster tls ca create` and `muster tls cert create` as a user runs them: the real binary in
//! a fresh directory (umask 022), with every flag in its space and `=` forms, checked for its
//! exact lines, exit codes, file names and modes, and its refusals in Consul's words. Then the
//! files it wrote carry real TLS: rustls handshakes in memory, a server verified by name,
//! mutual TLS with a client certificate, and names and CAs that must be refused. With openssl
//! on the PATH, openssl verifies the chains, reads the certificates and keys, and makes CAs
//! (EC with its parameters block, PKCS#1 RSA, PKCS#8 P-384) that muster must sign with.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConnection;
use rustls::{CertificateError, ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};

/// A fresh directory for one test, removed when the test passes (kept, and named, if it fails).
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("muster-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names of the files in the directory, sorted.
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// A file's permission bits.
    fn mode(&self, name: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.file(name)).unwrap().permissions().mode() & 0o777
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What a command printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `muster <args>` in `dir`, under umask 022 (the file modes asserted depend on it).
fn muster(dir: &Dir, args: &[&str]) -> Run {
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .current_dir(&dir.0)
        .output()
        .expect("sh runs muster");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Asserts `muster <args>` succeeded, printing exactly `stdout` and nothing on stderr.
#[track_caller]
fn ok(dir: &Dir, args: &[&str], stdout: &str) {
    let run = muster(dir, args);
    assert_eq!((run.code, run.stdout.as_str(), run.stderr.as_str()), (0, stdout, ""), "{args:?}");
}

/// Asserts `muster <args>` exited 1, printing exactly `stdout`, and `stderr` as its first line.
#[track_caller]
fn refused(dir: &Dir, args: &[&str], stdout: &str, stderr: &str) {
    let run = muster(dir, args);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert_eq!((run.code, run.stdout.as_str(), first), (1, stdout, stderr), "{args:?}: {run:?}");
}

const WARNING: &str = "\
==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.
";

const USING: &str = "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n";

/// The lines `tls cert create` prints for a pair of files named `<stem>.pem`, `<stem>-key.pem`.
fn saved(stem: &str) -> String {
    format!("==> Saved {stem}.pem\n==> Saved {stem}-key.pem\n")
}

/// A CA, then a server, client and CLI certificate, as `consul tls` makes them.
fn make_all(dir: &Dir) {
    ok(dir, &["tls", "ca", "create"], "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n");
    let server = ["tls", "cert", "create", "-server", "-node", "n1", "-additional-dnsname", "x.example"];
    let server = [&server[..], &["-additional-ipaddress", "10.0.0.9"]].concat();
    ok(dir, &server, &format!("{WARNING}{USING}{}", saved("dc1-server-consul-0")));
    ok(dir, &["tls", "cert", "create", "-client"], &format!("{USING}{}", saved("dc1-client-consul-0")));
    ok(dir, &["tls", "cert", "create", "-cli"], &format!("{USING}{}", saved("dc1-cli-consul-0")));
}

#[test]
fn files_lines_and_modes_are_consuls() {
    let dir = Dir::new("files");
    ok(&dir, &["tls", "ca", "create"], "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n");
    assert_eq!(dir.listing(), ["consul-agent-ca-key.pem", "consul-agent-ca.pem"]);
    assert_eq!((dir.mode("consul-agent-ca.pem"), dir.mode("consul-agent-ca-key.pem")), (0o644, 0o600));
    let key = std::fs::read_to_string(dir.file("consul-agent-ca-key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "Go's SEC1 form: {key}");
    let cert = std::fs::read_to_string(dir.file("consul-agent-ca.pem")).unwrap();
    assert!(
        cert.starts_with("-----BEGIN CERTIFICATE-----\n") && cert.ends_with("-----END CERTIFICATE-----\n")
    );

    // Every flag of `tls ca create`, in both forms, with one or two dashes.
    ok(
        &dir,
        &[
            "tls",
            "ca",
            "create",
            "-days",
            "30",
            "--domain=foo",
            "-name-constraint=true",
            "-additional-name-constraint",
            "example.test",
            "--additional-name-constraint=other.test",
            "-cluster-id=ABC",
            "-common-name",
            "Muster Test CA",
        ],
        "==> Saved foo-agent-ca.pem\n==> Saved foo-agent-ca-key.pem\n",
    );
    ok(
        &dir,
        &["tls", "ca", "create", "-days=3650", "-domain", "bar", "-name-constraint", "-cluster-id", "x"],
        "==> Saved bar-agent-ca.pem\n==> Saved bar-agent-ca-key.pem\n",
    );
    ok(&dir, &["tls", "ca", "create", "-domain", "baz", "-common-name=Baz"], &saved("baz-agent-ca"));

    ok(
        &dir,
        &["tls", "cert", "create", "-server"],
        &format!("{WARNING}{USING}{}", saved("dc1-server-consul-0")),
    );
    // The next free index; `-server=true` is `-server`.
    ok(
        &dir,
        &["tls", "cert", "create", "-server=true"],
        &format!("{WARNING}{USING}{}", saved("dc1-server-consul-1")),
    );
    ok(&dir, &["tls", "cert", "create", "-client"], &format!("{USING}{}", saved("dc1-client-consul-0")));
    ok(&dir, &["tls", "cert", "create", "--cli"], &format!("{USING}{}", saved("dc1-cli-consul-0")));
    ok(
        &dir,
        &[
            "tls",
            "cert",
            "create",
            "-server",
            "-node",
            "n1",
            "-additional-dnsname",
            "x.example",
            "-additional-dnsname=y.example",
            "-additional-ipaddress",
            "10.0.0.9",
            "--additional-ipaddress=::1",
        ],
        &format!("{WARNING}{USING}{}", saved("dc1-server-consul-2")),
    );
    // `#DOMAIN#` in -ca and -key's defaults is -domain.
    ok(
        &dir,
        &["tls", "cert", "create", "-client", "-domain", "foo", "-dc=dc3", "-days", "30"],
        &format!("==> Using foo-agent-ca.pem and foo-agent-ca-key.pem\n{}", saved("dc3-client-foo-0")),
    );
    ok(
        &dir,
        &[
            "tls",
            "cert",
            "create",
            "-server",
            "-dc",
            "dc2",
            "-domain=foo",
            "-days=30",
            "-ca",
            "foo-agent-ca.pem",
            "-key=foo-agent-ca-key.pem",
        ],
        &format!(
            "{WARNING}==> Using foo-agent-ca.pem and foo-agent-ca-key.pem\n{}",
            saved("dc2-server-foo-0")
        ),
    );
    ok(
        &dir,
        &[
            "tls",
            "cert",
            "create",
            "-cli",
            "-ca=bar-agent-ca.pem",
            "-key",
            "bar-agent-ca-key.pem",
            "-domain",
            "bar",
        ],
        &format!("==> Using bar-agent-ca.pem and bar-agent-ca-key.pem\n{}", saved("dc1-cli-bar-0")),
    );
    // Consul takes the first index where neither file is there.
    std::fs::remove_file(dir.file("dc1-client-consul-0.pem")).unwrap();
    ok(&dir, &["tls", "cert", "create", "-client"], &format!("{USING}{}", saved("dc1-client-consul-1")));

    let listing = dir.listing();
    for name in &listing {
        assert!(!name.ends_with(".tmp"), "a temporary file was left: {listing:?}");
        let mode = if name.ends_with("-key.pem") { 0o600 } else { 0o644 };
        assert_eq!(dir.mode(name), mode, "{name}");
    }
    let stems = [
        "bar-agent-ca",
        "baz-agent-ca",
        "consul-agent-ca",
        "dc1-cli-bar-0",
        "dc1-cli-consul-0",
        "dc1-client-consul-1",
        "dc1-server-consul-0",
        "dc1-server-consul-1",
        "dc1-server-consul-2",
        "dc2-server-foo-0",
        "dc3-client-foo-0",
        "foo-agent-ca",
    ];
    let mut expected: Vec<String> =
        stems.iter().flat_map(|stem| [format!("{stem}.pem"), format!("{stem}-key.pem")]).collect();
    expected.push("dc1-client-consul-0-key.pem".to_owned());
    expected.sort();
    assert_eq!(listing, expected);
}

#[test]
fn wrong_command_lines_are_refused_in_consuls_words_and_write_nothing() {
    let dir = Dir::new("refusals");
    let kind = "Please provide either -server, -client, or -cli";
    refused(&dir, &["tls", "cert", "create"], "", kind);
    refused(&dir, &["tls", "cert", "create", "-server", "-client"], "", kind);
    refused(&dir, &["tls", "cert", "create", "-client", "--cli"], "", kind);
    refused(&dir, &["tls", "cert", "create", "-server", "-client", "-cli"], "", kind);
    refused(&dir, &["tls", "cert", "create", "-client", "-node", "n1"], "", "-node requires -server");
    refused(&dir, &["tls", "cert", "create", "-cli", "-node=n1"], "", "-node requires -server");
    refused(&dir, &["tls", "cert", "create", "-server", "-ca", ""], "", "Please provide the ca");
    refused(&dir, &["tls", "cert", "create", "-server", "-key="], "", "Please provide the key");
    refused(
        &dir,
        &["tls", "cert", "create", "-server"],
        "",
        "Error reading CA: open consul-agent-ca.pem: no such file or directory",
    );
    refused(
        &dir,
        &["tls", "cert", "create", "-days", "abc"],
        "",
        "invalid value \"abc\" for flag -days: parse error",
    );
    refused(&dir, &["tls", "cert", "create", "-bogus"], "", "flag provided but not defined: -bogus");
    refused(&dir, &["tls", "ca", "create", "-days"], "", "flag needs an argument: -days");
    assert!(dir.listing().is_empty(), "{:?}", dir.listing());

    ok(&dir, &["tls", "ca", "create"], &saved("consul-agent-ca"));
    refused(&dir, &["tls", "ca", "create"], "", "consul-agent-ca.pem already exists.");
    std::fs::remove_file(dir.file("consul-agent-ca.pem")).unwrap();
    refused(&dir, &["tls", "ca", "create"], "", "consul-agent-ca-key.pem already exists.");
    refused(
        &dir,
        &["tls", "cert", "create", "-client"],
        "",
        "Error reading CA: open consul-agent-ca.pem: no such file or directory",
    );
    std::fs::remove_file(dir.file("consul-agent-ca-key.pem")).unwrap();
    ok(&dir, &["tls", "ca", "create"], &saved("consul-agent-ca"));
    refused(
        &dir,
        &["tls", "cert", "create", "-client", "-key", "missing.pem"],
        "",
        "Error reading CA key: open missing.pem: no such file or directory",
    );
    // Consul announces the files, then finds what is wrong with what it makes.
    // Go compares to the nanosecond: a certificate for 0 days is out of date once made.
    let run = muster(&dir, &["tls", "cert", "create", "-client", "-days", "0"]);
    assert_eq!((run.code, run.stdout.as_str()), (1, USING), "{run:?}");
    let expired = "x509: certificate has expired or is not yet valid: current time ";
    assert!(run.stderr.starts_with(expired) && run.stderr.contains("Z is after "), "{run:?}");
    refused(
        &dir,
        &["tls", "cert", "create", "-client", "-additional-ipaddress", "nope"],
        USING,
        "failed to parse certificate",
    );
    refused(
        &dir,
        &["tls", "cert", "create", "-cli", "-key", "consul-agent-ca.pem"],
        "==> Using consul-agent-ca.pem and consul-agent-ca.pem\n",
        "unknown PEM block type for signing key: CERTIFICATE",
    );
    ok(&dir, &["tls", "ca", "create", "-domain", "foo", "-name-constraint"], &saved("foo-agent-ca"));
    refused(
        &dir,
        &["tls", "cert", "create", "-server", "-domain", "foo", "-additional-dnsname", "evil.example"],
        &format!("{WARNING}==> Using foo-agent-ca.pem and foo-agent-ca-key.pem\n"),
        "x509: a root or intermediate certificate is not authorized to sign for this name",
    );
    refused(
        &dir,
        &["tls", "cert", "create", "-server", "-ca", "foo-agent-ca.pem"],
        &format!("{WARNING}==> Using foo-agent-ca.pem and consul-agent-ca-key.pem\n"),
        "failed to create certificate: x509: provided PrivateKey doesn't match parent's PublicKey",
    );
    assert_eq!(
        dir.listing(),
        ["consul-agent-ca-key.pem", "consul-agent-ca.pem", "foo-agent-ca-key.pem", "foo-agent-ca.pem"]
    );
}

#[test]
fn parent_commands_print_their_help_and_exit_1() {
    let dir = Dir::new("help");
    for (args, about) in [
        (&["tls"][..], "Builtin helpers for creating CAs and certificates"),
        (&["tls", "ca"], "Helpers for CAs"),
        (&["tls", "cert"], "Helpers for certificates"),
    ] {
        let run = muster(&dir, args);
        assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{args:?}");
        assert!(run.stderr.starts_with(about), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("create") && run.stderr.contains("$ muster tls"), "{}", run.stderr);
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap();
    CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().unwrap()
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn roots(ca: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca) {
        roots.add(cert).unwrap();
    }
    Arc::new(roots)
}

/// A TLS server with `stem.pem` and its key; it asks for a client certificate from
/// `client_ca` when given one.
fn server_config(dir: &Dir, stem: &str, client_ca: Option<&str>) -> Arc<ServerConfig> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots(&dir.file(ca)), provider()).build().unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let chain = certs(&dir.file(&format!("{stem}.pem")));
    Arc::new(builder.with_single_cert(chain, key(&dir.file(&format!("{stem}-key.pem")))).unwrap())
}

/// A TLS client trusting `ca`, presenting `stem.pem` when given one.
fn client_config(dir: &Dir, ca: &str, stem: Option<&str>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&dir.file(ca)));
    Arc::new(match stem {
        Some(stem) => builder
            .with_client_auth_cert(
                certs(&dir.file(&format!("{stem}.pem"))),
                key(&dir.file(&format!("{stem}-key.pem"))),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// Moves what `from` has to send into `to`, which processes it.
fn pump(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

/// A handshake in memory between `client`, verifying the server as `name`, and `server`, then
/// a message each way; the first error either side meets.
fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, name: &str) -> Result<(), rustls::Error> {
    const ROUNDS_MAX: usize = 10;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut client = Connection::Client(ClientConnection::new(client, name)?);
    let mut server = Connection::Server(ServerConnection::new(server)?);
    for _ in 0..ROUNDS_MAX {
        pump(&mut client, &mut server)?;
        pump(&mut server, &mut client)?;
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
    }
    assert!(!client.is_handshaking() && !server.is_handshaking(), "the handshake did not end");
    exchange(&mut client, &mut server, b"ping")?;
    exchange(&mut server, &mut client, b"pong")
}

/// Sends `message` from `from` to `to` over their session, and checks it arrives whole.
fn exchange(from: &mut Connection, to: &mut Connection, message: &[u8; 4]) -> Result<(), rustls::Error> {
    from.writer().write_all(message).unwrap();
    pump(from, to)?;
    let mut received = [0u8; 4];
    to.reader().read_exact(&mut received).unwrap();
    assert_eq!(&received, message);
    Ok(())
}

#[test]
fn the_certificates_carry_real_tls() {
    let dir = Dir::new("handshakes");
    make_all(&dir);
    let ca = "consul-agent-ca.pem";
    let server = server_config(&dir, "dc1-server-consul-0", None);
    let anonymous = client_config(&dir, ca, None);
    // The names an agent verifies a server by (`verify_server_hostname`), and the others
    // Consul puts in a server certificate.
    for name in
        ["server.dc1.consul", "n1.server.dc1.consul", "localhost", "x.example", "127.0.0.1", "10.0.0.9"]
    {
        handshake(server.clone(), anonymous.clone(), name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A server of another datacenter, or any other name, must not pass.
    for name in ["server.dc2.consul", "client.dc1.consul", "10.0.0.10"] {
        let error = handshake(server.clone(), anonymous.clone(), name).unwrap_err();
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{name}: {error:?}"
        );
    }

    // Mutual TLS, as with `verify_incoming`: a client certificate of the CA is required.
    let mutual = server_config(&dir, "dc1-server-consul-0", Some(ca));
    for stem in ["dc1-client-consul-0", "dc1-server-consul-0", "dc1-cli-consul-0"] {
        let client = client_config(&dir, ca, Some(stem));
        handshake(mutual.clone(), client, "server.dc1.consul").unwrap_or_else(|e| panic!("{stem}: {e}"));
    }
    let error = handshake(mutual.clone(), anonymous.clone(), "server.dc1.consul").unwrap_err();
    assert!(matches!(error, rustls::Error::NoCertificatesPresented), "{error:?}");
    // A client certificate of another CA is refused.
    ok(&dir, &["tls", "ca", "create", "-domain", "other"], &saved("other-agent-ca"));
    ok(
        &dir,
        &["tls", "cert", "create", "-client", "-domain", "other"],
        &format!("==> Using other-agent-ca.pem and other-agent-ca-key.pem\n{}", saved("dc1-client-other-0")),
    );
    let stranger = client_config(&dir, ca, Some("dc1-client-other-0"));
    let error = handshake(mutual, stranger, "server.dc1.consul").unwrap_err();
    assert!(matches!(error, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)), "{error:?}");
    // And a client trusting only the other CA refuses this server.
    let other = client_config(&dir, "other-agent-ca.pem", None);
    let error = handshake(server, other, "server.dc1.consul").unwrap_err();
    assert!(matches!(error, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)), "{error:?}");
}

/// `openssl <args>` in `dir`: exit code, stdout, stderr.
fn openssl(dir: &Dir, args: &[&str]) -> Run {
    let output = Command::new("openssl").args(args).current_dir(&dir.0).output().expect("openssl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Whether openssl can be run; says why the test does less when it cannot.
fn have_openssl(test: &str) -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !found {
        println!("{test}: skipped, `openssl` is not on the PATH");
    }
    found
}

#[track_caller]
fn openssl_ok(dir: &Dir, args: &[&str]) -> String {
    let run = openssl(dir, args);
    assert_eq!(run.code, 0, "openssl {args:?}: {run:?}");
    run.stdout
}

#[test]
fn openssl_reads_and_verifies_what_muster_made() {
    if !have_openssl("openssl_reads_and_verifies_what_muster_made") {
        return;
    }
    let dir = Dir::new("openssl");
    make_all(&dir);
    let verified = openssl_ok(
        &dir,
        &[
            "verify",
            "-CAfile",
            "consul-agent-ca.pem",
            "dc1-server-consul-0.pem",
            "dc1-client-consul-0.pem",
            "dc1-cli-consul-0.pem",
        ],
    );
    assert_eq!(
        verified,
        "dc1-server-consul-0.pem: OK\ndc1-client-consul-0.pem: OK\ndc1-cli-consul-0.pem: OK\n"
    );

    let text = openssl_ok(&dir, &["x509", "-in", "dc1-server-consul-0.pem", "-noout", "-text"]);
    println!("--- dc1-server-consul-0.pem, as openssl reads it ---\n{text}");
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "Version: 3 (0x2)",
        "Signature Algorithm: ecdsa-with-SHA256",
        "Issuer: C = US, ST = CA, L = San Francisco, street = 101 Second Street, postalCode = 94105, O = \
         HashiCorp Inc., CN = Consul Agent CA ",
        "Subject: CN = server.dc1.consul",
        "Public-Key: (256 bit)",
        "ASN1 OID: prime256v1",
        "X509v3 Subject Alternative Name: DNS:x.example, DNS:n1.server.dc1.consul, DNS:server.dc1.consul, \
         DNS:localhost, IP Address:10.0.0.9, IP Address:127.0.0.1",
        "X509v3 Extended Key Usage: TLS Web Server Authentication, TLS Web Client Authentication",
        "X509v3 Key Usage: critical Digital Signature, Key Encipherment",
        "X509v3 Basic Constraints: critical CA:FALSE",
        "X509v3 Subject Key Identifier:",
        "X509v3 Authority Key Identifier:",
    ] {
        assert!(flat.contains(expected), "{expected:?} not in:\n{text}");
    }
    let client = openssl_ok(&dir, &["x509", "-in", "dc1-client-consul-0.pem", "-noout", "-text"]);
    let client: String = client.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(client
        .contains("X509v3 Extended Key Usage: TLS Web Client Authentication, TLS Web Server Authentication"));
    assert!(client.contains("DNS:client.dc1.consul, DNS:localhost, IP Address:127.0.0.1"), "{client}");
    let cli = openssl_ok(&dir, &["x509", "-in", "dc1-cli-consul-0.pem", "-noout", "-text"]);
    let cli: String = cli.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        cli.contains("X509v3 Subject Alternative Name: DNS:cli.dc1.consul, DNS:localhost X509v3"),
        "{cli}"
    );
    assert!(!cli.contains("Extended Key Usage"), "{cli}");

    let ca = openssl_ok(&dir, &["x509", "-in", "consul-agent-ca.pem", "-noout", "-text"]);
    let ca: String = ca.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(ca.contains("X509v3 Key Usage: critical Digital Signature, Certificate Sign, CRL Sign"), "{ca}");
    assert!(ca.contains("X509v3 Basic Constraints: critical CA:TRUE"), "{ca}");
    assert!(!ca.contains("Name Constraints"), "{ca}");
    // Subject and authority key IDs: the same 32 bytes.
    let ids: Vec<&str> =
        ca.split("Key Identifier: ").skip(1).map(|rest| rest.split(' ').next().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{ca}");
    assert_eq!((ids[0], ids[0].len()), (ids[1], 32 * 3 - 1), "{ca}");

    // Validity: from now, for 365 days (a certificate) and 1825 days (a CA), to the minute.
    for (file, days) in [("dc1-server-consul-0.pem", 365), ("consul-agent-ca.pem", 1825)] {
        let seconds = days * 24 * 60 * 60;
        let before =
            openssl(&dir, &["x509", "-in", file, "-noout", "-checkend", &(seconds - 60).to_string()]);
        let after = openssl(&dir, &["x509", "-in", file, "-noout", "-checkend", &(seconds + 60).to_string()]);
        assert_eq!((before.code, after.code), (0, 1), "{file}: {before:?} {after:?}");
    }
    let start = openssl_ok(&dir, &["x509", "-in", "dc1-client-consul-0.pem", "-noout", "-startdate"]);
    println!("dc1-client-consul-0.pem: {}", start.trim());

    // The keys are EC keys openssl reads, each the pair of its certificate.
    for stem in ["consul-agent-ca", "dc1-server-consul-0", "dc1-client-consul-0", "dc1-cli-consul-0"] {
        let (cert, key) = (format!("{stem}.pem"), format!("{stem}-key.pem"));
        openssl_ok(&dir, &["ec", "-in", &key, "-noout", "-check"]);
        let from_key = openssl_ok(&dir, &["pkey", "-in", &key, "-pubout"]);
        let from_cert = openssl_ok(&dir, &["x509", "-in", &cert, "-noout", "-pubkey"]);
        assert_eq!(from_key, from_cert, "{stem}");
    }

    // A CA with name constraints, and a SPIFFE ID.
    ok(
        &dir,
        &[
            "tls",
            "ca",
            "create",
            "-domain",
            "foo",
            "-name-constraint",
            "-additional-name-constraint",
            "example.test",
            "-cluster-id",
            "ABC",
        ],
        &saved("foo-agent-ca"),
    );
    let foo = openssl_ok(&dir, &["x509", "-in", "foo-agent-ca.pem", "-noout", "-text"]);
    let foo: String = foo.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        foo.contains("X509v3 Name Constraints: critical Permitted: DNS:example.test DNS:foo DNS:localhost"),
        "{foo}"
    );
    assert!(foo.contains("URI:spiffe://abc.foo"), "{foo}");
    ok(
        &dir,
        &["tls", "cert", "create", "-server", "-domain", "foo", "-additional-dnsname", "a.example.test"],
        &format!(
            "{WARNING}==> Using foo-agent-ca.pem and foo-agent-ca-key.pem\n{}",
            saved("dc1-server-foo-0")
        ),
    );
    let verified = openssl_ok(&dir, &["verify", "-CAfile", "foo-agent-ca.pem", "dc1-server-foo-0.pem"]);
    assert_eq!(verified, "dc1-server-foo-0.pem: OK\n");
}

#[test]
fn cas_made_by_openssl_sign_as_consuls_would() {
    if !have_openssl("cas_made_by_openssl_sign_as_consuls_would") {
        return;
    }
    let dir = Dir::new("outside");
    // EC P-256 with openssl's `EC PARAMETERS` block first; PKCS#1 RSA; PKCS#8 P-384.
    openssl_ok(&dir, &["ecparam", "-name", "prime256v1", "-genkey", "-out", "ec.pem"]);
    openssl_ok(&dir, &["genrsa", "-traditional", "-out", "rsa.pem", "2048"]);
    openssl_ok(
        &dir,
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "p384.pem"],
    );
    for (key, header, kind) in [
        ("ec.pem", "-----BEGIN EC PARAMETERS-----", "-server"),
        ("rsa.pem", "-----BEGIN RSA PRIVATE KEY-----", "-client"),
        ("p384.pem", "-----BEGIN PRIVATE KEY-----", "-server"),
    ] {
        assert!(std::fs::read_to_string(dir.file(key)).unwrap().starts_with(header), "{key}");
        let ca = format!("ca-{key}");
        let subject = format!("/O=Outside Org/CN=Outside CA {key}");
        openssl_ok(
            &dir,
            &["req", "-x509", "-new", "-key", key, "-subj", &subject, "-days", "10", "-out", &ca],
        );
        let run = muster(&dir, &["tls", "cert", "create", kind, "-ca", &ca, "-key", key]);
        assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{key}: {run:?}");
        let stem =
            run.stdout.lines().last().unwrap().trim_start_matches("==> Saved ").trim_end_matches("-key.pem");
        let verified = openssl_ok(&dir, &["verify", "-CAfile", &ca, &format!("{stem}.pem")]);
        assert_eq!(verified, format!("{stem}.pem: OK\n"));
        let server = server_config(&dir, stem, None);
        let client = client_config(&dir, &ca, None);
        handshake(server, client, "localhost").unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}
