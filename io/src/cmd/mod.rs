//! Consul's client commands (`kv`, `members`, `catalog`, `operator raft`, ...): each is a few
//! calls to an agent's HTTP API and Consul's words around the answer, so that scripts written
//! against `consul` read the same lines and exit codes (`../shared/reference/consul-behaviour.md`
//! §4).
//!
//! A command returns `Ok(exit code)` after printing its output, or `Err(`[`CliError`]`)`, which
//! `main` prints to stderr and exits 1 on, as Consul's `UI.Error` then `return 1`.
//! The HTTP client is ureq: these commands make a handful of blocking requests and exit, so
//! they need no runtime.

pub(crate) mod acl;
pub(crate) mod autopilot;
pub(crate) mod catalog;
pub(crate) mod cluster;
pub(crate) mod debug;
mod error;
pub(crate) mod exec;
pub(crate) mod keyring;
pub(crate) mod kv;
pub(crate) mod lock;
pub(crate) mod monitor;
pub(crate) mod services;
pub(crate) mod snapshot;
pub(crate) mod template;
pub(crate) mod tls;
pub(crate) mod validate;
pub(crate) mod version;
pub(crate) mod watch;

use std::io::IsTerminal;

use clap::Args;

pub(crate) use self::error::{CliError, DataError, FileError, HandlerError, Outcome};

/// The agent address when neither `-http-addr` nor `CONSUL_HTTP_ADDR` names one.
pub(crate) const HTTP_ADDR_DEFAULT: &str = "127.0.0.1:8500";

/// The flags every HTTP-based command takes (Consul's `flags.HTTPFlags`: `ClientFlags` and
/// `ServerFlags`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct HttpArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// The datacenter to ask. Defaults to the agent's.
    #[arg(long = "datacenter")]
    pub(crate) datacenter: Option<String>,
    /// Lets any server answer a read, not only the leader.
    #[arg(long = "stale")]
    pub(crate) stale: bool,
    /// `-namespace` and `-partition`, for the commands that take them ([`TenancyArgs`],
    /// [`PartitionArgs`]); never flags of their own here.
    #[arg(skip)]
    pub(crate) tenancy: TenancyArgs,
}

/// The flags of a command that talks to its own agent only (Consul's `HTTPFlags.ClientFlags`
/// without `ServerFlags`: no `-datacenter`, no `-stale`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ClientArgs {
    /// The agent's HTTP address (`host:port` or `http://host:port`). Defaults to
    /// `CONSUL_HTTP_ADDR`, then 127.0.0.1:8500.
    #[arg(long = "http-addr")]
    pub(crate) http_addr: Option<String>,
    /// The ACL token to send. Defaults to `CONSUL_HTTP_TOKEN`.
    #[arg(long = "token")]
    pub(crate) token: Option<String>,
    /// A file holding the ACL token to send, instead of -token (`CONSUL_HTTP_TOKEN_FILE`).
    #[arg(long = "token-file")]
    pub(crate) token_file: Option<String>,
    /// A CA certificate file for HTTPS (`CONSUL_CACERT`).
    #[arg(long = "ca-file")]
    pub(crate) ca_file: Option<String>,
    /// A directory of CA certificates for HTTPS (`CONSUL_CAPATH`).
    #[arg(long = "ca-path")]
    pub(crate) ca_path: Option<String>,
    /// A client certificate for HTTPS, for agents with `verify_incoming` (`CONSUL_CLIENT_CERT`).
    #[arg(long = "client-cert")]
    pub(crate) client_cert: Option<String>,
    /// The client certificate's key (`CONSUL_CLIENT_KEY`).
    #[arg(long = "client-key")]
    pub(crate) client_key: Option<String>,
    /// The server name (SNI) for HTTPS (`CONSUL_TLS_SERVER_NAME`).
    #[arg(long = "tls-server-name")]
    pub(crate) tls_server_name: Option<String>,
    /// Whether the agent's certificate is checked, when a command says (`muster template`'s
    /// `-consul-ssl-verify`); else `CONSUL_HTTP_SSL_VERIFY` decides.
    #[arg(skip)]
    pub(crate) ssl_verify: Option<bool>,
}

impl ClientArgs {
    /// The same flags as [`HttpArgs`], the server flags unset.
    pub(crate) fn http(&self) -> HttpArgs {
        HttpArgs { client: self.clone(), ..HttpArgs::default() }
    }
}

/// Consul's `MultiTenancyFlags`: Enterprise's namespace and admin partition. Consul CE's client
/// sends them (`?ns=`, `?partition=`) and its agent refuses them, as muster's does.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct TenancyArgs {
    /// The namespace to ask (`CONSUL_NAMESPACE`; a Consul Enterprise feature).
    #[arg(long = "namespace")]
    pub(crate) namespace: Option<String>,
    /// The admin partition to ask (`CONSUL_PARTITION`; a Consul Enterprise feature).
    #[arg(long = "partition")]
    pub(crate) partition: Option<String>,
}

/// Consul's `PartitionFlag`: `-partition` alone.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PartitionArgs {
    /// The admin partition to ask (`CONSUL_PARTITION`; a Consul Enterprise feature).
    #[arg(long = "partition")]
    pub(crate) partition: Option<String>,
}

impl HttpArgs {
    /// These flags with a command's `-namespace` and `-partition`.
    pub(crate) fn in_tenancy(&self, tenancy: &TenancyArgs) -> HttpArgs {
        HttpArgs { tenancy: tenancy.clone(), ..self.clone() }
    }

    /// These flags with a command's `-partition`.
    pub(crate) fn in_partition(&self, partition: &PartitionArgs) -> HttpArgs {
        let tenancy = TenancyArgs { namespace: None, partition: partition.partition.clone() };
        HttpArgs { tenancy, ..self.clone() }
    }
}

/// Why a request to the agent failed, in the words of Consul's Go client (`api.Client`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// `-http-addr` names a scheme Go's `net/http` does not speak.
    #[error("Unknown protocol scheme: {0}")]
    UnknownScheme(String),
    /// `-http-addr` is a Unix socket, which Consul's client speaks and muster's does not yet.
    #[error("{0}: muster's CLI does not speak HTTP over Unix sockets yet")]
    UnixSocket(String),
    /// The TLS flags are refused, as Consul's `SetupTLSConfig` refuses them.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `-token-file` could not be read.
    #[error("Error loading token file: {0}")]
    TokenFile(#[source] FileError),
    /// The request got no answer: Go's `Get "url": dial tcp ...: connection refused`.
    #[error("{0}")]
    Transport(String),
    /// The agent answered with a status other than 200.
    #[error("Unexpected response code: {status} ({body})")]
    Status {
        /// The status.
        status: u16,
        /// The body, trailing whitespace trimmed.
        body: String,
    },
    /// The answer was not the JSON expected.
    #[error("decoding the agent's answer: {0}")]
    Decode(#[source] serde_json::Error),
}

impl ClientError {
    /// The error Consul's client makes of a streamed answer with a status other than 200: the
    /// status and the start of the body.
    pub(crate) fn unexpected(status: u16, body: impl std::io::Read) -> ClientError {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(body, 4096), &mut text);
        ClientError::Status { status, body: text.trim_end().to_owned() }
    }
}

/// A blocking client of one agent's HTTP API.
#[derive(Clone)]
pub(crate) struct Client {
    /// `http://host:port`, no trailing slash.
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
    datacenter: Option<String>,
    stale: bool,
    /// `?ns=` on every request (Consul's `Config.Namespace`), when not empty.
    namespace: String,
    /// `?partition=` on every request (Consul's `Config.Partition`), when not empty.
    partition: String,
}

/// An answer: its status, body and `X-Consul-Index`.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) index: Option<u64>,
}

impl Reply {
    /// The body of a 200, or the error Consul's Go client makes of anything else.
    pub(crate) fn ok(self) -> Result<Vec<u8>, ClientError> {
        if self.status == 200 {
            Ok(self.body)
        } else {
            let body = String::from_utf8_lossy(&self.body).trim_end().to_owned();
            Err(ClientError::Status { status: self.status, body })
        }
    }

    /// The body of a 200 as JSON of type `T`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, ClientError> {
        let body = self.ok()?;
        serde_json::from_slice(&body).map_err(ClientError::Decode)
    }
}

/// The most a command reads of one answer (a snapshot archive is the largest).
const REPLY_BYTES_MAX: u64 = 1 << 30;

impl Client {
    /// A client for the agent the flags (or the environment) name, or why there is none in
    /// the words Consul's commands use (`Error connecting to Consul agent: ...`).
    pub(crate) fn new(args: &HttpArgs) -> Result<Client, CliError> {
        Client::build(args).map_err(CliError::client("Error connecting to Consul agent"))
    }

    /// The same, the reason bare (as Consul's `api.NewClient` says it), for the commands that
    /// word it their own way.
    pub(crate) fn build(args: &HttpArgs) -> Result<Client, ClientError> {
        let flags = &args.client;
        // Consul's `api.DefaultConfig` reads the environment; a flag given wins, even empty.
        let setting = |flag: &Option<String>, name: &str| {
            flag.clone().or_else(|| std::env::var(name).ok().filter(|value| !value.is_empty()))
        };
        let addr = setting(&flags.http_addr, "CONSUL_HTTP_ADDR").filter(|addr| !addr.is_empty());
        let tls = Tls {
            ca_file: setting(&flags.ca_file, "CONSUL_CACERT").unwrap_or_default(),
            ca_path: setting(&flags.ca_path, "CONSUL_CAPATH").unwrap_or_default(),
            cert_file: setting(&flags.client_cert, "CONSUL_CLIENT_CERT").unwrap_or_default(),
            key_file: setting(&flags.client_key, "CONSUL_CLIENT_KEY").unwrap_or_default(),
        };
        // `NewHttpClient` sets TLS up whatever the scheme: its refusals come first.
        tls.check()?;
        let mut base = base_url(addr.as_deref().unwrap_or(HTTP_ADDR_DEFAULT))?;
        if env_bool("CONSUL_HTTP_SSL") == Some(true) {
            base = base.replacen("http://", "https://", 1);
        }
        // Read whatever the scheme, for its warning, as Consul's `DefaultConfig` reads it.
        let verify = flags.ssl_verify.or_else(|| env_bool("CONSUL_HTTP_SSL_VERIFY")) != Some(false);
        let mut agent = ureq::Agent::config_builder().http_status_as_error(false);
        if base.starts_with("https://") {
            agent = agent.tls_config(tls.client_config(verify)?);
        }
        let mut token = setting(&flags.token, "CONSUL_HTTP_TOKEN").filter(|token| !token.is_empty());
        // A token file wins over -token whenever it holds one (Consul's `NewClient`).
        let token_file = setting(&flags.token_file, "CONSUL_HTTP_TOKEN_FILE").unwrap_or_default();
        if !token_file.is_empty() {
            let text = std::fs::read_to_string(&token_file)
                .map_err(|error| ClientError::TokenFile(FileError::at(&token_file)(error)))?;
            if !text.trim().is_empty() {
                token = Some(text.trim().to_owned());
            }
        }
        let tenancy = &args.tenancy;
        let agent = agent.build().into();
        Ok(Client {
            base,
            agent,
            token,
            datacenter: args.datacenter.clone(),
            stale: args.stale,
            namespace: setting(&tenancy.namespace, "CONSUL_NAMESPACE").unwrap_or_default(),
            partition: setting(&tenancy.partition, "CONSUL_PARTITION").unwrap_or_default(),
        })
    }

    pub(crate) fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Reply, ClientError> {
        self.call("GET", path, query, None)
    }

    /// A `GET` whose body is read in pieces, `received` told the bytes so far after each (a
    /// snapshot's progress line).
    pub(crate) fn get_counted(
        &self,
        path: &str,
        query: &[(&str, &str)],
        mut received: impl FnMut(u64),
    ) -> Result<Reply, ClientError> {
        use std::io::Read;
        let url = self.url("GET", path, query);
        let go_error = |error: ureq::Error| go_transport_error("GET", &url, &error);
        let response = with_token(self.agent.get(&url), self.token.as_deref()).call().map_err(go_error)?;
        let index = index_of(&response);
        let status = response.status().as_u16();
        let mut reader = response.into_body().into_with_config().limit(REPLY_BYTES_MAX).reader();
        let mut body = Vec::new();
        let mut piece = vec![0u8; 256 << 10];
        loop {
            let read = reader.read(&mut piece).map_err(|error| go_error(ureq::Error::Io(error)))?;
            if read == 0 {
                return Ok(Reply { status, body, index });
            }
            body.extend_from_slice(&piece[..read]);
            received(body.len() as u64);
        }
    }

    pub(crate) fn put(&self, path: &str, query: &[(&str, &str)], body: &[u8]) -> Result<Reply, ClientError> {
        self.call("PUT", path, query, Some(body))
    }

    pub(crate) fn post(&self, path: &str, query: &[(&str, &str)]) -> Result<Reply, ClientError> {
        self.call("POST", path, query, Some(&[]))
    }

    pub(crate) fn delete(&self, path: &str, query: &[(&str, &str)]) -> Result<Reply, ClientError> {
        self.call("DELETE", path, query, None)
    }

    pub(crate) fn post_body(&self, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        self.call("POST", path, &[], Some(body))
    }

    pub(crate) fn delete_body(&self, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        self.call("DELETE", path, &[], Some(body))
    }

    /// The URL of a request: `path` escaped, then `query` with the client's `dc` and (for a
    /// read) `stale`; a pair with an empty value is sent as a bare name (`?recurse`), as
    /// Consul's client sends its switches.
    fn url(&self, method: &str, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{}", self.base, escape_path(path));
        let mut pairs: Vec<(&str, &str)> = query.to_vec();
        if !self.namespace.is_empty() {
            pairs.push(("ns", &self.namespace));
        }
        if !self.partition.is_empty() {
            pairs.push(("partition", &self.partition));
        }
        if let Some(dc) = &self.datacenter {
            pairs.push(("dc", dc));
        }
        if self.stale && method == "GET" {
            pairs.push(("stale", ""));
        }
        for (i, (name, value)) in pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.extend(form_urlencoded::byte_serialize(name.as_bytes()));
            if !value.is_empty() {
                url.push('=');
                url.extend(form_urlencoded::byte_serialize(value.as_bytes()));
            }
        }
        url
    }

    /// A `GET` whose body is read as it arrives (`monitor`): its status and a reader.
    pub(crate) fn get_stream(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(u16, impl std::io::Read), ClientError> {
        let url = self.url("GET", path, query);
        let response = with_token(self.agent.get(&url), self.token.as_deref())
            .call()
            .map_err(|error| go_transport_error("GET", &url, &error))?;
        let status = response.status().as_u16();
        Ok((status, response.into_body().into_with_config().limit(u64::MAX).reader()))
    }

    /// A `GET` whose body is read as it arrives, for at most `limit` in all (`debug`'s log and
    /// metrics streams): reading past it fails with a timeout, which ends the stream.
    pub(crate) fn get_stream_for(
        &self,
        path: &str,
        query: &[(&str, &str)],
        limit: std::time::Duration,
    ) -> Result<(u16, impl std::io::Read), ClientError> {
        let url = self.url("GET", path, query);
        let response = with_token(self.agent.get(&url), self.token.as_deref())
            .config()
            .timeout_global(Some(limit))
            .build()
            .call()
            .map_err(|error| go_transport_error("GET", &url, &error))?;
        let status = response.status().as_u16();
        Ok((status, response.into_body().into_with_config().limit(u64::MAX).reader()))
    }

    /// One request. `path` is escaped here; `query` pairs with an empty value are sent as a bare
    /// name (`?recurse`), as Consul's client sends its switches.
    fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply, ClientError> {
        let url = self.url(method, path, query);
        let go_error = |error: ureq::Error| go_transport_error(method, &url, &error);
        let mut response = {
            let token = self.token.as_deref();
            match (method, body) {
                ("GET", _) => with_token(self.agent.get(&url), token).call(),
                ("DELETE", None) => with_token(self.agent.delete(&url), token).call(),
                // Go's client sends a body with DELETE where the API wants one (the keyring).
                ("DELETE", Some(body)) => {
                    with_token(self.agent.delete(&url), token).force_send_body().send(body)
                }
                ("POST", body) => with_token(self.agent.post(&url), token).send(body.unwrap_or_default()),
                (_, body) => with_token(self.agent.put(&url), token).send(body.unwrap_or_default()),
            }
            .map_err(go_error)?
        };
        let index = index_of(&response);
        let status = response.status().as_u16();
        let body =
            response.body_mut().with_config().limit(REPLY_BYTES_MAX).read_to_vec().map_err(go_error)?;
        Ok(Reply { status, body, index })
    }
}

/// A reply's `X-Consul-Index`.
fn index_of<B>(response: &ureq::http::Response<B>) -> Option<u64> {
    let value = response.headers().get("X-Consul-Index")?;
    value.to_str().ok()?.parse().ok()
}

fn with_token<B>(request: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(token) => request.header("X-Consul-Token", token),
        None => request,
    }
}

/// `http://host:port` (or `https://`) from what `-http-addr` takes: `host:port`,
/// `http://host:port`, `https://host:port`.
fn base_url(addr: &str) -> Result<String, ClientError> {
    let addr = addr.trim_end_matches('/');
    match addr.split_once("://") {
        None => Ok(format!("http://{addr}")),
        Some(("http" | "https", _)) => Ok(addr.to_owned()),
        Some(("unix", _)) => Err(ClientError::UnixSocket(addr.to_owned())),
        Some((scheme, _)) => Err(ClientError::UnknownScheme(scheme.to_owned())),
    }
}

/// A boolean environment variable as Consul's client reads it: unset or empty is `None`; a
/// value `strconv.ParseBool` refuses is false, with Consul's warning.
fn env_bool(name: &str) -> Option<bool> {
    let value = std::env::var(name).ok().filter(|value| !value.is_empty())?;
    let parsed = crate::goflag::parse_go_bool(&value);
    if parsed.is_none() {
        eprintln!(
            "[WARN]  consul-api: could not parse {name}: error=\"strconv.ParseBool: parsing {value:?}: \
             invalid syntax\""
        );
    }
    Some(parsed.unwrap_or(false))
}

/// The TLS settings of Consul's client (`api.TLSConfig`): checked as `SetupTLSConfig` checks
/// them whatever the scheme, so that a command refuses what Consul's refuses, and used for
/// `https://` addresses.
struct Tls {
    ca_file: String,
    ca_path: String,
    cert_file: String,
    key_file: String,
}

/// Why the TLS flags are refused, in the words of Consul's `SetupTLSConfig`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A certificate without its key, or a key without its certificate.
    #[error("both client cert and client key must be provided")]
    HalfPair,
    /// The certificate or key file could not be read.
    #[error(transparent)]
    Read(#[from] FileError),
    /// The certificate file holds no certificate.
    #[error("tls: failed to find any PEM data in certificate input")]
    NoCertificate,
    /// The key file holds no key.
    #[error("tls: failed to find any PEM data in key input")]
    NoKey,
    /// `-ca-file` could not be read.
    #[error("Error loading CA File: {0}")]
    CaFile(#[source] FileError),
    /// `-ca-file` holds no certificate.
    #[error("Error loading CA File: Couldn't parse PEM in: {0}")]
    CaFilePem(String),
    /// `-ca-path` could not be listed.
    #[error("Error loading CA Path: {0}")]
    CaPath(#[source] FileError),
    /// A file in `-ca-path` could not be read.
    #[error("Error loading file from CAPath: {0}")]
    CaPathFile(#[source] FileError),
    /// A file in `-ca-path` holds no certificate.
    #[error("Error loading CA Path: Couldn't parse PEM in: {0}")]
    CaPathPem(String),
}

impl Tls {
    /// Consul's refusals, in its words: a certificate without its key (or the reverse), files
    /// that cannot be read, and files without PEM data.
    fn check(&self) -> Result<(), TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |path: &str| std::fs::read(path).map_err(FileError::at(path));
        let certificates = |pem: &[u8]| CertificateDer::pem_slice_iter(pem).filter(Result::is_ok).count();
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (true, true) => {}
            (false, false) => {
                if certificates(&read(&self.cert_file)?) == 0 {
                    return Err(TlsError::NoCertificate);
                }
                if PrivateKeyDer::from_pem_slice(&read(&self.key_file)?).is_err() {
                    return Err(TlsError::NoKey);
                }
            }
            _ => return Err(TlsError::HalfPair),
        }
        if !self.ca_file.is_empty() {
            let pem = read(&self.ca_file).map_err(TlsError::CaFile)?;
            if certificates(&pem) == 0 {
                return Err(TlsError::CaFilePem(self.ca_file.clone()));
            }
        } else if !self.ca_path.is_empty() {
            let entries = std::fs::read_dir(&self.ca_path)
                .map_err(|error| TlsError::CaPath(FileError::at(&self.ca_path)(error)))?;
            for entry in entries.flatten().filter(|entry| entry.path().is_file()) {
                let path = entry.path().display().to_string();
                let pem = read(&path).map_err(TlsError::CaPathFile)?;
                if certificates(&pem) == 0 {
                    return Err(TlsError::CaPathPem(path));
                }
            }
        }
        Ok(())
    }
}

impl Tls {
    /// The HTTPS client's TLS: the CA of `-ca-file`, else of every file in `-ca-path`, else the
    /// system's roots; the client certificate when one is given; no verification at all when
    /// `CONSUL_HTTP_SSL_VERIFY` is false (Go's `InsecureSkipVerify`).
    fn client_config(&self, verify: bool) -> Result<ureq::tls::TlsConfig, TlsError> {
        use ureq::tls::{ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
        let roots = self.roots()?;
        let client_cert = match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (false, false) => {
                let read = |path: &str| std::fs::read(path).map_err(FileError::at(path));
                let chain = pem_certificates(&read(&self.cert_file)?);
                let key = PrivateKey::from_pem(&read(&self.key_file)?).map_err(|_| TlsError::NoKey)?;
                Some(ClientCert::new_with_certs(&chain, key))
            }
            _ => None,
        };
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        Ok(TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider)
            .root_certs(RootCerts::from(roots))
            .client_cert(client_cert)
            .disable_verification(!verify)
            .build())
    }

    /// The certificate authorities a server's certificate is checked against.
    fn roots(&self) -> Result<Vec<ureq::tls::Certificate<'static>>, TlsError> {
        let read = |path: &str| std::fs::read(path).map_err(FileError::at(path));
        if !self.ca_file.is_empty() {
            return Ok(pem_certificates(&read(&self.ca_file).map_err(TlsError::CaFile)?));
        }
        if !self.ca_path.is_empty() {
            let entries = std::fs::read_dir(&self.ca_path)
                .map_err(|error| TlsError::CaPath(FileError::at(&self.ca_path)(error)))?;
            let mut roots = Vec::new();
            for entry in entries.flatten().filter(|entry| entry.path().is_file()) {
                let path = entry.path().display().to_string();
                roots.extend(pem_certificates(&read(&path).map_err(TlsError::CaPathFile)?));
            }
            return Ok(roots);
        }
        let found = rustls_native_certs::load_native_certs();
        Ok(found.certs.iter().map(|der| ureq::tls::Certificate::from_der(der).to_owned()).collect())
    }
}

/// The certificates in PEM text, in order (anything else in it is skipped).
fn pem_certificates(pem: &[u8]) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(certificate)) => Some(certificate),
            _ => None,
        })
        .collect()
}

/// A path with the bytes a URL path cannot carry percent-escaped (Go's `url.PathEscape` rules
/// per segment: keys may hold spaces, `?` and `#`).
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        let plain = byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte);
        if plain {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A transport failure as Go's `net/http` words it, which Consul's messages embed:
/// `Get "http://127.0.0.1:8500/v1/agent/members": dial tcp 127.0.0.1:8500: connect: connection
/// refused`.
fn go_transport_error(method: &str, url: &str, error: &ureq::Error) -> ClientError {
    let verb = match method {
        "GET" => "Get",
        "PUT" => "Put",
        "POST" => "Post",
        "DELETE" => "Delete",
        other => other,
    };
    let host = url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default();
    let reason = match error {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("dial tcp {host}: connect: connection refused")
        }
        ureq::Error::Io(io) if tls_error(io).is_some() => go_tls_reason(tls_error(io).expect("checked")),
        ureq::Error::ConnectionFailed => format!("dial tcp {host}: connect: connection refused"),
        ureq::Error::HostNotFound => {
            format!("dial tcp: lookup {}: no such host", host.rsplit_once(':').map_or(host, |(h, _)| h))
        }
        other => other.to_string(),
    };
    ClientError::Transport(format!("{verb} \"{url}\": {reason}"))
}

/// The TLS failure inside an I/O error, if that is what it is.
fn tls_error(io: &std::io::Error) -> Option<&rustls::Error> {
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A TLS failure as Go's `crypto/tls` and `crypto/x509` word the common ones.
fn go_tls_reason(error: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError};
    let verify = |reason: &str| format!("tls: failed to verify certificate: x509: {reason}");
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            verify("certificate signed by unknown authority")
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => verify("certificate is not valid for the name asked for"),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => verify("certificate has expired or is not yet valid"),
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "remote error: tls: certificate required".to_owned()
        }
        rustls::Error::AlertReceived(AlertDescription::BadCertificate) => {
            "remote error: tls: bad certificate".to_owned()
        }
        rustls::Error::AlertReceived(AlertDescription::UnknownCA) => {
            "remote error: tls: unknown certificate authority".to_owned()
        }
        // What a plain-HTTP server answers to a ClientHello is no TLS record at all.
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "http: server gave HTTP response to HTTPS client".to_owned()
        }
        other => format!("tls: {other}"),
    }
}

/// Rows aligned as Consul's `columnize.SimpleFormat` aligns them: fields split on `\x1f`, each
/// column as wide as its widest cell plus two spaces, the last column unpadded.
pub(crate) fn columnize(rows: &[String]) -> String {
    let cells: Vec<Vec<&str>> = rows.iter().map(|row| row.split('\x1f').collect()).collect();
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A flag that turns true at SIGINT or SIGTERM, for commands that must clean up before they
/// exit (`lock`: stop the child, release, destroy the session). The signals are watched by a
/// thread of their own; after the first, the default action no longer applies.
pub(crate) fn shutdown_signals() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let raised = flag.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build();
    if let Ok(runtime) = runtime {
        std::thread::spawn(move || {
            runtime.block_on(async {
                let Ok(mut terminate) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                raised.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        });
    }
    flag
}

/// A user event's target filters (`-node`, `-service`, `-tag` regular expressions), as `event`
/// and `exec` take them.
#[derive(Debug, Clone, Args)]
pub(crate) struct EventFilters {
    /// Only nodes whose name matches this regular expression.
    #[arg(long, default_value = "")]
    pub(crate) node: String,
    /// Only nodes with a service whose name matches this regular expression.
    #[arg(long, default_value = "")]
    pub(crate) service: String,
    /// Only nodes whose -service has a tag matching this regular expression.
    #[arg(long, default_value = "")]
    pub(crate) tag: String,
}

impl EventFilters {
    fn pairs(&self) -> [(&'static str, &str); 3] {
        [("node", &self.node), ("service", &self.service), ("tag", &self.tag)]
    }

    /// Consul's checks: each a valid regular expression, and no tag without a service.
    pub(crate) fn check(&self) -> Result<(), CliError> {
        // Consul's message names each flag as `<flag> filter`.
        let filters =
            [("node filter", &self.node), ("service filter", &self.service), ("tag filter", &self.tag)];
        for (what, pattern) in filters {
            if !pattern.is_empty() {
                regex::Regex::new(pattern).map_err(|source| CliError::Regex { what, source })?;
            }
        }
        if !self.tag.is_empty() && self.service.is_empty() {
            return Err(CliError::usage("Cannot provide tag filter without service filter."));
        }
        Ok(())
    }
}

/// Fires user event `name` with `payload` through the agent; the event's ID.
pub(crate) fn fire_event(
    client: &Client,
    name: &str,
    filters: &EventFilters,
    payload: &[u8],
) -> Result<String, ClientError> {
    #[derive(serde::Deserialize)]
    struct Fired {
        #[serde(rename = "ID")]
        id: String,
    }
    let query: Vec<(&str, &str)> =
        filters.pairs().into_iter().filter(|(_, value)| !value.is_empty()).collect();
    let fired: Fired =
        client.put(&format!("/v1/event/fire/{name}"), &query, payload).and_then(|reply| reply.json())?;
    Ok(fired.id)
}

/// Consul's `Too many arguments (expected N, got M)` when more positional arguments came.
pub(crate) fn at_most(args: &[String], expected: usize) -> Result<(), CliError> {
    if args.len() > expected {
        return Err(CliError::Usage(format!("Too many arguments (expected {expected}, got {})", args.len())));
    }
    Ok(())
}

/// A progress line on stderr for long operations, shown only when stderr is a terminal (a
/// script piping the output sees nothing of it).
pub(crate) struct Progress {
    shown: bool,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress { shown: std::io::stderr().is_terminal() }
    }

    /// Replaces the line with `text`.
    pub(crate) fn show(&mut self, text: &str) {
        if self.shown {
            eprint!("\r\x1b[2K{text}");
        }
    }

    /// Clears the line.
    pub(crate) fn done(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
    }
}

/// Reads a command's data argument as Consul does: `@file` reads the file, `-` reads stdin, and
/// anything else is the data itself.
pub(crate) fn data_argument(data: &str) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    if let Some(path) = data.strip_prefix('@') {
        return Ok(std::fs::read(path).map_err(FileError::at(path))?);
    }
    if data == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(DataError::Stdin)?;
        return Ok(bytes);
    }
    Ok(data.as_bytes().to_vec())
}

/// `seconds` since the Unix epoch as Go's `time.RFC3339` writes a UTC time (Go writes the
/// current time in the local zone; here it is UTC too). Proleptic Gregorian calendar, any year
/// (Howard Hinnant's `civil_from_days`), so no time a certificate holds can make it fail.
/// Shared by `tls` (validity in errors) and `debug` (its capture's names and times).
pub(crate) fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second = seconds.rem_euclid(86_400);
    let shifted = days + 719_468; // Days from 0000-03-01 to 1970-01-01.
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (second / 3600, second / 60 % 60, second % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_two_spaces() {
        let rows =
            ["Node\x1fAddress\x1fStatus".to_owned(), "a-long-name\x1f127.0.0.1:8301\x1falive".to_owned()];
        assert_eq!(
            columnize(&rows),
            "Node         Address         Status\na-long-name  127.0.0.1:8301  alive\n"
        );
        // A last cell that is empty leaves no trailing spaces.
        assert_eq!(columnize(&["a\x1f".to_owned(), "bbb\x1fc".to_owned()]), "a\nbbb  c\n");
    }

    #[test]
    fn addresses_take_consuls_forms() {
        assert_eq!(base_url("127.0.0.1:8500").unwrap(), "http://127.0.0.1:8500");
        assert_eq!(base_url("http://10.0.0.1:8500/").unwrap(), "http://10.0.0.1:8500");
        assert_eq!(base_url("https://10.0.0.1:8501").unwrap(), "https://10.0.0.1:8501");
        assert!(base_url("unix:///run/consul.sock").unwrap_err().to_string().contains("Unix sockets"));
        assert_eq!(base_url("ftp://x").unwrap_err().to_string(), "Unknown protocol scheme: ftp");
    }

    #[test]
    fn paths_escape_what_a_url_cannot_carry() {
        assert_eq!(escape_path("/v1/kv/a b/c?d#e%"), "/v1/kv/a%20b/c%3Fd%23e%25");
        assert_eq!(escape_path("/v1/kv/ünï"), "/v1/kv/%C3%BCn%C3%AF");
        assert_eq!(escape_path("/v1/kv/a:b@c=d"), "/v1/kv/a:b@c=d");
    }

    #[test]
    fn a_refused_connection_reads_as_gos() {
        let refused = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            go_transport_error("GET", "http://127.0.0.1:8500/v1/agent/members", &refused).to_string(),
            "Get \"http://127.0.0.1:8500/v1/agent/members\": dial tcp 127.0.0.1:8500: connect: connection refused"
        );
    }

    #[test]
    fn unexpected_statuses_read_as_consuls_client_says_them() {
        let reply = Reply { status: 500, body: b"Invalid node\n".to_vec(), index: None };
        assert_eq!(reply.ok().unwrap_err().to_string(), "Unexpected response code: 500 (Invalid node)");
    }
}
