//! TLS for the checks that speak it (HTTPS, TCP+TLS, gRPC and H2PING over TLS): rustls on ring,
//! verifying against the system's roots as Go's checks do, or not at all with `TLSSkipVerify`;
//! the name verified is `TLSServerName` when set, else the target's host.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The application protocol a connection offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// None offered (a TCP+TLS check speaks nothing after the handshake).
    None,
    /// HTTP/1.1 (HTTPS checks).
    Http1,
    /// HTTP/2 (gRPC and H2PING checks).
    H2,
}

/// How a check's TLS connection is verified.
#[derive(Debug, Clone, Copy)]
pub struct Verify<'a> {
    /// The name the certificate must carry; empty: the target's host.
    pub server_name: &'a str,
    /// Accept any certificate (Consul's `TLSSkipVerify`); handshake signatures are still checked.
    pub skip: bool,
}

/// Why a check's TLS connection failed, in the words its output carries.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The name to verify is not a DNS name or an IP address.
    #[error("tls: invalid server name {name:?}: {source}")]
    ServerName {
        /// The name.
        name: String,
        /// Why it is not one.
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The handshake failed (a certificate refused, the peer not speaking TLS).
    #[error("tls: {0}")]
    Handshake(#[source] std::io::Error),
}

/// A TLS connection over `stream` to `host`, verified as `verify` says.
pub async fn connect(
    stream: TcpStream,
    host: &str,
    verify: Verify<'_>,
    alpn: Alpn,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let name = if verify.server_name.is_empty() { host } else { verify.server_name };
    let name = ServerName::try_from(name.to_owned())
        .map_err(|source| TlsError::ServerName { name: name.to_owned(), source })?;
    let connector = tokio_rustls::TlsConnector::from(config(verify.skip, alpn));
    connector.connect(name, stream).await.map_err(TlsError::Handshake)
}

/// The client configuration for one (verification, ALPN) pair, built once per process (the
/// system's roots are read from disk once).
fn config(skip_verify: bool, alpn: Alpn) -> Arc<ClientConfig> {
    static CONFIGS: [OnceLock<Arc<ClientConfig>>; 6] = [const { OnceLock::new() }; 6];
    let slot = usize::from(skip_verify) * 3
        + match alpn {
            Alpn::None => 0,
            Alpn::Http1 => 1,
            Alpn::H2 => 2,
        };
    CONFIGS[slot]
        .get_or_init(|| {
            let provider = provider();
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports rustls's default protocol versions");
            let mut config = if skip_verify {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                    .with_no_client_auth()
            } else {
                builder.with_root_certificates(system_roots()).with_no_client_auth()
            };
            config.alpn_protocols = match alpn {
                Alpn::None => vec![],
                Alpn::Http1 => vec![b"http/1.1".to_vec()],
                Alpn::H2 => vec![b"h2".to_vec()],
            };
            Arc::new(config)
        })
        .clone()
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// The system's trusted roots; unreadable ones are skipped (as Go's loader does), and with none
/// every verified connection fails with an unknown-issuer error.
fn system_roots() -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "agent: reading the system's TLS roots for checks");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "agent: system TLS roots for checks");
    Arc::new(roots)
}

/// `TLSSkipVerify`: any certificate chain and name are accepted, but the handshake's signatures
/// are still checked against the certificate presented (as Go's `InsecureSkipVerify`).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
