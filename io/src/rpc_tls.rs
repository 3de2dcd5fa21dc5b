//! TLS on the server port (8300), for Raft and server RPC: Consul's `tls.internal_rpc` over
//! `tls.defaults`, with its semantics (`tlsutil.Configurator`):
//! - a connection that opens with [`TLS_PROTOCOL_BYTE`] is a TLS session, served with the
//!   agent's certificate; with `verify_incoming` the other side must present a certificate
//!   the configured CAs signed, and a connection without TLS is refused;
//! - with `verify_outgoing` this agent's own connections (Raft to its peers, RPC to servers)
//!   are TLS, the server's chain checked against the CAs and, with `verify_server_hostname`,
//!   its name against `server.<datacenter>.<domain>`; this agent presents its certificate when
//!   it has one. `verify_server_hostname` alone implies `verify_outgoing` here (asking for the
//!   name to be checked is asking for the check).
//!
//! Without any of these settings the port stays plain; a reload may secure it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TlsStanza;
use crate::http::tls::{key_pair, provider_for, roots, server_config, versions, HttpsError};
use crate::secure::{Secure, Securing, ServerIo, ServerStream, TLS_PROTOCOL_BYTE};

/// The server port's TLS: built at start, replaced on reload (SIGHUP, `muster reload`), as
/// Consul's `tlsutil.Configurator.Update` replaces it; a connection keeps what it was opened
/// with. Without settings it is off: plain connections both ways.
pub struct InternalTls {
    state: RwLock<Arc<State>>,
    /// `server.<datacenter>.<domain>`: the name sent and, with `verify_server_hostname`, checked.
    server_name: ServerName<'static>,
}

/// Settings built for a reload, not yet in use.
pub struct Prepared(State);

/// What one set of settings builds.
struct State {
    /// Serves TLS sessions; `None` without a certificate (a TLS connection then fails).
    acceptor: Option<TlsAcceptor>,
    /// Opens this agent's sessions, with `verify_outgoing`.
    connector: Option<TlsConnector>,
    verify_incoming: bool,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("InternalTls")
            .field("serves_tls", &state.acceptor.is_some())
            .field("verify_incoming", &state.verify_incoming)
            .field("verify_outgoing", &state.connector.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl InternalTls {
    /// The port's TLS for `settings` (the `internal_rpc` stanza over `defaults`). Refusals
    /// are `tlsutil`'s.
    pub fn new(
        settings: &TlsStanza,
        datacenter: &str,
        domain: &str,
    ) -> Result<(InternalTls, Vec<String>), HttpsError> {
        let name = format!("server.{datacenter}.{}", domain.trim_end_matches('.'));
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| HttpsError::KeyPair(format!("{name} is not a name a certificate can carry")))?;
        let (state, warnings) = State::new(settings)?;
        Ok((InternalTls { state: RwLock::new(Arc::new(state)), server_name }, warnings))
    }

    /// What `settings` build, to [`InternalTls::install`] once every other part of a reload
    /// has been built too.
    pub fn prepare(&self, settings: &TlsStanza) -> Result<(Prepared, Vec<String>), HttpsError> {
        State::new(settings).map(|(state, warnings)| (Prepared(state), warnings))
    }

    /// Secures the connections opened from now on as `prepared` says.
    pub fn install(&self, prepared: Prepared) {
        *self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(prepared.0);
    }

    fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl State {
    fn new(settings: &TlsStanza) -> Result<(State, Vec<String>), HttpsError> {
        let mut warnings = Vec::new();
        let verify_incoming = settings.verify_incoming == Some(true);
        let verify_hostname = settings.verify_server_hostname == Some(true);
        let verify_outgoing = settings.verify_outgoing == Some(true) || verify_hostname;
        let acceptor = server_config(settings, verify_incoming, &mut warnings)?
            .map(|config| TlsAcceptor::from(Arc::new(config)));
        let connector = verify_outgoing
            .then(|| client_config(settings, verify_hostname, &mut warnings))
            .transpose()?
            .map(|config| TlsConnector::from(Arc::new(config)));
        Ok((State { acceptor, connector, verify_incoming }, warnings))
    }
}

/// The client side: servers' chains checked against the CAs (a CA is required), names only
/// with `verify_hostname`; this agent's certificate presented when it has one.
fn client_config(
    settings: &TlsStanza,
    verify_hostname: bool,
    warnings: &mut Vec<String>,
) -> Result<ClientConfig, HttpsError> {
    let roots = roots(settings)?.ok_or(HttpsError::VerifyOutgoingWithoutCa)?;
    let provider = Arc::new(provider_for(settings, warnings)?);
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| HttpsError::Ca { path: "ca_file".to_owned(), reason: error.to_string() })?;
    let verifier: Arc<dyn ServerCertVerifier> =
        if verify_hostname { verifier } else { Arc::new(ChainOnly(verifier)) };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(settings, warnings)?)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    Ok(match key_pair(settings)? {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    })
}

impl Secure for InternalTls {
    fn refuses_plain(&self) -> bool {
        self.state().verify_incoming
    }

    fn accept(&self, tcp: TcpStream) -> Securing {
        let acceptor = self.state().acceptor.clone();
        Box::pin(async move {
            let Some(acceptor) = acceptor else {
                return Err(io::Error::other(
                    "a TLS connection, but no certificate is configured to serve it",
                ));
            };
            let session = acceptor.accept(tcp).await?;
            Ok(Box::new(session) as ServerStream)
        })
    }

    fn secures_outgoing(&self) -> bool {
        self.state().connector.is_some()
    }

    fn dial(&self, mut tcp: TcpStream) -> Securing {
        let connector = self.state().connector.clone();
        let name = self.server_name.clone();
        Box::pin(async move {
            let Some(connector) = connector else { return Ok(Box::new(tcp) as ServerStream) };
            tcp.write_all(&[TLS_PROTOCOL_BYTE]).await?;
            let session = connector.connect(name, tcp).await?;
            Ok(Box::new(session) as ServerStream)
        })
    }
}

/// Go's `InsecureSkipVerify` plus Consul's own chain check (`wrapTLSClient` without
/// `verify_server_hostname`): the chain must lead to a configured CA, the name may be any.
/// webpki checks the chain before the name, so a name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether a TLS session still looks open without waiting: a read that would wait means it
/// is, and nothing to read. (The socket underneath may hold records that carry no data, such
/// as TLS 1.3's session tickets, so its own readiness would mislead.)
fn session_open<S: AsyncRead + Unpin>(session: &mut S) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut context = Context::from_waker(Waker::noop());
    matches!(Pin::new(session).poll_read(&mut context, &mut buf), Poll::Pending)
}

impl ServerIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn still_open(&mut self) -> bool {
        session_open(self)
    }
}

impl ServerIo for tokio_rustls::client::TlsStream<TcpStream> {
    fn still_open(&mut self) -> bool {
        session_open(self)
    }
}

#[cfg(test)]
mod tests;
