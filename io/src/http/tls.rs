//! HTTPS: the API served over TLS on `ports.https` (8501 by convention) with the agent's
//! certificate, and, with `verify_incoming`, only to clients whose certificate a configured CA
//! signed. The settings are Consul's `tls.https` stanza over `tls.defaults` (the pre-1.12
//! top-level keys are read as `tls.defaults`); the refusals are `tlsutil`'s, in its words.
//!
//! rustls on ring speaks TLS 1.2 and 1.3 only: `tls_min_version = "TLSv1_0"` or `"TLSv1_1"`
//! (which Go still allows) gives 1.2 as the floor, and the CBC suites Go offers in
//! `tls_cipher_suites` are skipped with a warning.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::limit::LimitedListener;
use super::{router, server, Api};
use crate::config::TlsStanza;

/// Consul's default `limits.https_handshake_timeout`.
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// The TLS 1.2 suites Consul accepts in `tls_cipher_suites` (`types.TLSCipherSuites`), and
/// whether rustls implements each (it has no CBC suites).
const CONSUL_CIPHER_SUITES: &[(&str, Option<&str>)] = &[
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", Some("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256")),
];

/// Why the HTTPS listener cannot be set up, in the words of Consul's `tlsutil`.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// `cert_file` or `key_file` is missing while `ports.https` asks for HTTPS.
    #[error(
        "ports.https is {port} but no certificate is configured: set tls.https (or tls.defaults) \
         cert_file and key_file"
    )]
    NoCertificate {
        /// The port asked for.
        port: u16,
    },
    /// The certificate or key cannot be read or parsed.
    #[error("Failed to load cert/key pair: {0}")]
    KeyPair(String),
    /// A CA file cannot be read, or holds no certificate.
    #[error("Error loading from {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// `ca_path` holds no file.
    #[error("Error loading from CAPath: no CAs found")]
    NoCasInPath,
    /// `verify_incoming` without a CA to verify against.
    #[error("VerifyIncoming set but no CA certificates were provided")]
    VerifyWithoutCa,
    /// `verify_incoming` without a certificate to present.
    #[error(
        "VerifyIncoming requires either a Cert and Key pair in the configuration file, or auto_encrypt/auto_config be enabled"
    )]
    VerifyWithoutCertificate,
    /// `verify_outgoing` without a CA to verify servers against.
    #[error("VerifyOutgoing set but no CA certificates were provided")]
    VerifyOutgoingWithoutCa,
    /// `tls_min_version` names no version.
    #[error(
        "TLSMinVersion: value {0} not supported, please specify one of [TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]"
    )]
    MinVersion(String),
    /// `tls_cipher_suites` names a suite Consul does not know.
    #[error("unsupported cipher {0:?}")]
    CipherSuite(String),
    /// rustls refused the pieces (a key that does not match the certificate, say).
    #[error("Failed to load cert/key pair: {0}")]
    Rustls(#[from] rustls::Error),
    /// rustls refused the client verifier (a CA it cannot use).
    #[error("VerifyIncoming: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The HTTPS listener's configuration: built at start, replaced on reload (SIGHUP, `muster
/// reload`), as Consul's `tlsutil.Configurator.Update` replaces its certificates; a
/// connection keeps the configuration it was accepted with.
#[derive(Clone)]
pub struct Https {
    acceptor: Arc<RwLock<TlsAcceptor>>,
    port: u16,
    handshake_timeout: Duration,
}

/// A configuration built for a reload, not yet in use.
pub struct Prepared(TlsAcceptor);

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Https {
    /// The server configuration for `settings` (the `https` stanza over `defaults`), with the
    /// warnings to log at start.
    pub fn new(
        settings: &TlsStanza,
        port: u16,
        handshake_timeout: Duration,
    ) -> Result<(Https, Vec<String>), HttpsError> {
        let (acceptor, warnings) = acceptor(settings, port)?;
        Ok((Https { acceptor: Arc::new(RwLock::new(acceptor)), port, handshake_timeout }, warnings))
    }

    /// A configuration built from `settings`, to [`Https::install`] once every other part of
    /// a reload has been built too.
    pub fn prepare(&self, settings: &TlsStanza) -> Result<(Prepared, Vec<String>), HttpsError> {
        acceptor(settings, self.port).map(|(acceptor, warnings)| (Prepared(acceptor), warnings))
    }

    /// Serves the connections accepted from now on with `prepared`.
    pub fn install(&self, prepared: Prepared) {
        *self.acceptor.write().unwrap_or_else(std::sync::PoisonError::into_inner) = prepared.0;
    }

    /// Serves the API over TLS on `listener` until the task is dropped, each client address
    /// allowed `conns_per_client` connections at once (handshakes included).
    pub async fn serve(self, listener: TcpListener, api: Arc<Api>, conns_per_client: usize) {
        let router = router(api);
        let mut listener = LimitedListener::new(listener, conns_per_client);
        loop {
            let (stream, peer) = listener.accept().await;
            let acceptor = self.acceptor.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let handshake_timeout = self.handshake_timeout;
            let router = router.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(session)) => server::serve_connection(session, router).await,
                    Ok(Err(error)) => log_handshake(peer, &error),
                    Err(_) => tracing::debug!(%peer, "agent.http: TLS handshake timed out"),
                }
            });
        }
    }
}

/// The acceptor for `settings`, and what to warn of.
fn acceptor(settings: &TlsStanza, port: u16) -> Result<(TlsAcceptor, Vec<String>), HttpsError> {
    let mut warnings = Vec::new();
    let verify_incoming = settings.verify_incoming == Some(true);
    let Some(mut config) = server_config(settings, verify_incoming, &mut warnings)? else {
        return Err(HttpsError::NoCertificate { port });
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), warnings))
}

/// The server side of TLS for `settings`: its certificate, and with `verify_incoming` the
/// clients' certificates required and checked against its CAs; `None` without a certificate
/// (which `verify_incoming` refuses, as Consul's `loadProtocolConfig` does).
pub(crate) fn server_config(
    settings: &TlsStanza,
    verify_incoming: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<ServerConfig>, HttpsError> {
    let roots = roots(settings)?;
    let pair = key_pair(settings)?;
    if verify_incoming {
        if roots.is_none() {
            return Err(HttpsError::VerifyWithoutCa);
        }
        if pair.is_none() {
            return Err(HttpsError::VerifyWithoutCertificate);
        }
    }
    let Some((chain, key)) = pair else { return Ok(None) };
    let provider = Arc::new(provider_for(settings, warnings)?);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(settings, warnings)?)?;
    let builder = match roots.filter(|_| verify_incoming) {
        None => builder.with_no_client_auth(),
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?,
        ),
    };
    Ok(Some(builder.with_single_cert(chain, key)?))
}

/// The certificate chain and key of `settings`, when both are set.
pub(crate) fn key_pair(
    settings: &TlsStanza,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, HttpsError> {
    let (Some(cert_file), Some(key_file)) = (non_empty(&settings.cert_file), non_empty(&settings.key_file))
    else {
        return Ok(None);
    };
    let chain = certificates(cert_file).map_err(HttpsError::KeyPair)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|error| HttpsError::KeyPair(pem_reason(key_file, &error)))?;
    Ok(Some((chain, key)))
}

/// Go's server logs a failed handshake at debug level (`http: TLS handshake error from ...`):
/// a port scanner or a client without a certificate is not the agent's fault.
fn log_handshake(peer: SocketAddr, error: &io::Error) {
    tracing::debug!(%peer, %error, "agent.http: TLS handshake error");
}

pub(crate) fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|text| !text.is_empty())
}

/// The certificates in a PEM file, in order; Go's words when there are none.
fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|error| go_open_error(path, &error))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err("tls: failed to find any PEM data in certificate input".to_owned());
    }
    Ok(chain)
}

fn pem_reason(path: &str, error: &rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(io) => go_open_error(path, io),
        _ => "tls: failed to find any PEM data in key input".to_owned(),
    }
}

/// An `open` failure as Go's `os` package words it, which Consul's messages embed.
fn go_open_error(path: &str, error: &io::Error) -> String {
    let reason = match error.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    };
    format!("open {path}: {reason}")
}

/// The certificate authorities of `ca_file`, else of every file under `ca_path`; `None` when
/// neither is set (Consul's `LoadCAs`).
pub(crate) fn roots(settings: &TlsStanza) -> Result<Option<RootCertStore>, HttpsError> {
    let files = if let Some(file) = non_empty(&settings.ca_file) {
        vec![file.to_owned()]
    } else if let Some(dir) = non_empty(&settings.ca_path) {
        let files = files_under(Path::new(dir))
            .map_err(|error| HttpsError::Ca { path: dir.to_owned(), reason: error.to_string() })?;
        if files.is_empty() {
            return Err(HttpsError::NoCasInPath);
        }
        files
    } else {
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    for path in files {
        let certificates =
            certificates(&path).map_err(|reason| HttpsError::Ca { path: path.clone(), reason })?;
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| HttpsError::Ca { path: path.clone(), reason: error.to_string() })?;
        }
    }
    Ok(Some(roots))
}

/// Every file under `dir`, sorted, as Go's `filepath.Walk` visits them.
fn files_under(dir: &Path) -> io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path)?);
        } else {
            files.push(path.display().to_string());
        }
    }
    Ok(files)
}

/// The protocol versions from `tls_min_version` (unset: TLS 1.2, Consul's default).
pub(crate) fn versions(
    settings: &TlsStanza,
    warnings: &mut Vec<String>,
) -> Result<&'static [&'static SupportedProtocolVersion], HttpsError> {
    let min_version = settings.tls_min_version.as_deref().unwrap_or_default();
    static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min_version {
        "" | "TLSv1_2" | "tls12" => Ok(BOTH),
        "TLSv1_3" | "tls13" => Ok(ONLY_13),
        "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => {
            warnings.push(format!(
                "tls_min_version {min_version}: muster's TLS speaks 1.2 and 1.3 only, so HTTPS clients need TLS 1.2 or later"
            ));
            Ok(BOTH)
        }
        other => Err(HttpsError::MinVersion(other.to_owned())),
    }
}

/// ring's provider, its TLS 1.2 suites narrowed to `tls_cipher_suites` when set (TLS 1.3's
/// suites are not configurable, as in Go).
pub(crate) fn provider_for(
    settings: &TlsStanza,
    warnings: &mut Vec<String>,
) -> Result<CryptoProvider, HttpsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    let Some(names) = non_empty(&settings.tls_cipher_suites) else { return Ok(provider) };
    let mut chosen: Vec<SupportedCipherSuite> =
        provider.cipher_suites.iter().copied().filter(|suite| suite.tls13().is_some()).collect();
    for name in names.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let Some((_, rustls_name)) = CONSUL_CIPHER_SUITES.iter().find(|(consul, _)| *consul == name) else {
            return Err(HttpsError::CipherSuite(name.to_owned()));
        };
        let suite = rustls_name.and_then(|wanted| {
            provider.cipher_suites.iter().copied().find(|suite| suite.suite().as_str() == Some(wanted))
        });
        match suite {
            Some(suite) if !chosen.contains(&suite) => chosen.push(suite),
            Some(_) => {}
            None => warnings.push(format!(
                "tls_cipher_suites: {name} is a CBC suite muster's TLS does not offer; skipped"
            )),
        }
    }
    provider.cipher_suites = chosen;
    Ok(provider)
}

#[cfg(test)]
mod tests;
