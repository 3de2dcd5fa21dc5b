//! Raft and RPC over the server port with TLS: two transports exchange a message over
//! mutual TLS; a plain peer, a peer from another CA and a server certificate without the
//! expected name are each kept out, as Consul keeps them out.

use std::time::Duration;

use muster_core::raft::{Message, ServerId};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use super::*;
use crate::raft_net::RaftTransport;

/// A CA and certificates it signs, written to a scratch directory.
struct Pki {
    dir: std::path::PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("muster-rpc-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    /// A certificate for `names`, as (cert, key) paths.
    fn issue(&self, stem: &str, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).unwrap();
        self.sign(stem, params)
    }

    /// A certificate for `names` that expired in 2021.
    fn issue_expired(&self, stem: &str, names: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(stem, params)
    }

    fn sign(&self, stem: &str, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) =
            (self.dir.join(format!("{stem}.pem")), self.dir.join(format!("{stem}-key.pem")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path.display().to_string(), key_path.display().to_string())
    }

    fn settings(&self, (cert, key): (String, String), verify_hostname: bool) -> TlsStanza {
        TlsStanza {
            ca_file: Some(self.dir.join("ca.pem").display().to_string()),
            cert_file: Some(cert),
            key_file: Some(key),
            verify_incoming: Some(true),
            verify_outgoing: Some(true),
            verify_server_hostname: Some(verify_hostname),
            ..TlsStanza::default()
        }
    }
}

fn secure(settings: &TlsStanza) -> Option<Arc<dyn Secure>> {
    let (tls, _) = InternalTls::new(settings, "dc1", "consul.").unwrap();
    Some(Arc::new(tls) as Arc<dyn Secure>)
}

/// Whether server 2 hears server 1's message within a second.
async fn delivered(from: Option<Arc<dyn Secure>>, to: Option<Arc<dyn Secure>>) -> bool {
    let local = "127.0.0.1:0".parse().unwrap();
    let (mut sender, _) = RaftTransport::bind_with_rpc(1, local, None, from).await.unwrap();
    let (receiver, mut inbound) = RaftTransport::bind_with_rpc(2, local, None, to).await.unwrap();
    sender.set_peer(2 as ServerId, receiver.local_addr());
    let message = Message::TimeoutNow { term: 7 };
    for _ in 0..10 {
        sender.send(2, &message);
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), inbound.recv()).await {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn raft_crosses_mutual_tls_and_keeps_out_who_may_not_join() {
    let pki = Pki::new("one");
    let server = pki.settings(pki.issue("server", &["server.dc1.consul", "localhost"]), true);
    let other_server = pki.settings(pki.issue("server2", &["server.dc1.consul"]), true);
    assert!(delivered(secure(&server), secure(&other_server)).await, "two servers of one CA talk");

    // A plain peer is refused by a server that verifies incoming connections.
    assert!(!delivered(None, secure(&server)).await, "a plain connection was read");

    // A peer whose certificate another CA signed is refused.
    let stranger_pki = Pki::new("two");
    let stranger = stranger_pki.settings(stranger_pki.issue("stranger", &["server.dc1.consul"]), true);
    assert!(!delivered(secure(&stranger), secure(&server)).await, "another CA's peer was read");

    // A certificate without server.dc1.consul passes the chain check but not the name check.
    let client_named = pki.settings(pki.issue("client", &["client.dc1.consul"]), true);
    assert!(
        !delivered(secure(&server), secure(&client_named)).await,
        "a client's certificate served as a server's"
    );
    let lax = TlsStanza { verify_server_hostname: Some(false), ..server.clone() };
    assert!(
        delivered(secure(&lax), secure(&client_named)).await,
        "without verify_server_hostname the chain is enough"
    );
}

#[test]
fn tlsutil_refusals_and_a_plain_port_without_settings() {
    let pki = Pki::new("refusals");
    let pair = pki.issue("server", &["server.dc1.consul"]);
    let refused = |settings: &TlsStanza| InternalTls::new(settings, "dc1", "consul").unwrap_err().to_string();
    let no_ca = TlsStanza { ca_file: None, ..pki.settings(pair.clone(), false) };
    assert_eq!(refused(&no_ca), "VerifyIncoming set but no CA certificates were provided");
    let no_cert = TlsStanza { cert_file: None, ..pki.settings(pair.clone(), false) };
    assert_eq!(
        refused(&no_cert),
        "VerifyIncoming requires either a Cert and Key pair in the configuration file, or auto_encrypt/auto_config be enabled"
    );
    let outgoing_only = TlsStanza { ca_file: None, verify_outgoing: Some(true), ..TlsStanza::default() };
    assert_eq!(refused(&outgoing_only), "VerifyOutgoing set but no CA certificates were provided");
    let (off, _) = InternalTls::new(&TlsStanza::default(), "dc1", "consul").unwrap();
    assert!(!off.refuses_plain() && !off.secures_outgoing(), "no settings, no TLS");
}

/// A reload turns TLS on for the connections opened after it: a port that served plain reads
/// no TLS peer until the files give it a certificate, then reads it and refuses plain ones.
#[tokio::test]
async fn a_reload_secures_the_connections_opened_after_it() {
    let pki = Pki::new("reload");
    let sender = secure(&pki.settings(pki.issue("sender", &["server.dc1.consul"]), true));
    let (receiver, _) = InternalTls::new(&TlsStanza::default(), "dc1", "consul").unwrap();
    let receiver = Arc::new(receiver);
    let as_secure = || Some(receiver.clone() as Arc<dyn Secure>);
    assert!(delivered(None, as_secure()).await, "plain before the reload");
    assert!(!delivered(sender.clone(), as_secure()).await, "no certificate to serve TLS with yet");
    let (prepared, _) =
        receiver.prepare(&pki.settings(pki.issue("receiver", &["server.dc1.consul"]), true)).unwrap();
    receiver.install(prepared);
    assert!(delivered(sender, as_secure()).await, "TLS after the reload");
    assert!(!delivered(None, as_secure()).await, "plain refused after the reload");
}

/// An expired certificate is refused whether or not names are checked: without
/// `verify_server_hostname` only a name mismatch is forgiven, never the chain's validity.
#[tokio::test]
async fn an_expired_server_certificate_is_refused_with_or_without_name_checks() {
    let pki = Pki::new("expired");
    let expired = pki.settings(pki.issue_expired("expired", &["server.dc1.consul"]), true);
    for verify_hostname in [true, false] {
        let sender = pki.settings(
            pki.issue(&format!("sender-{verify_hostname}"), &["server.dc1.consul"]),
            verify_hostname,
        );
        assert!(
            !delivered(secure(&sender), secure(&expired)).await,
            "an expired server certificate was accepted"
        );
    }
    let current = pki.settings(pki.issue("current", &["server.dc1.consul"]), false);
    let sender = pki.settings(pki.issue("sender", &["server.dc1.consul"]), false);
    assert!(
        delivered(secure(&sender), secure(&current)).await,
        "the same set-up with a current certificate talks"
    );
}
