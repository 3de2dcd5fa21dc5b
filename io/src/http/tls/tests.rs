//! The HTTPS listener's refusals, in `tlsutil`'s words, and what each setting builds.

use super::*;

/// A self-signed certificate and its key in `dir`, as (cert, key) paths.
fn pair(dir: &Path) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("muster-https-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stanza(cert: &str, key: &str) -> TlsStanza {
    TlsStanza { cert_file: Some(cert.to_owned()), key_file: Some(key.to_owned()), ..TlsStanza::default() }
}

fn refusal(settings: &TlsStanza) -> String {
    Https::new(settings, 8501, HANDSHAKE_TIMEOUT_DEFAULT).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn each_refusal_is_worded_as_consul_words_it() {
    let dir = scratch("refusals");
    let (cert, key) = pair(&dir);
    let missing = dir.join("missing.pem").display().to_string();
    assert!(refusal(&TlsStanza::default()).starts_with("ports.https is 8501 but no certificate"));
    assert_eq!(
        refusal(&stanza(&missing, &key)),
        format!("Failed to load cert/key pair: open {missing}: no such file or directory")
    );
    assert_eq!(
        refusal(&stanza(&cert, &cert)),
        "Failed to load cert/key pair: tls: failed to find any PEM data in key input"
    );
    assert_eq!(
        refusal(&stanza(&key, &key)),
        "Failed to load cert/key pair: tls: failed to find any PEM data in certificate input"
    );
    let verify = TlsStanza { verify_incoming: Some(true), ..stanza(&cert, &key) };
    assert_eq!(refusal(&verify), "VerifyIncoming set but no CA certificates were provided");
    let empty_dir = scratch("empty-ca-path");
    let ca_path = TlsStanza { ca_path: Some(empty_dir.display().to_string()), ..verify.clone() };
    assert_eq!(refusal(&ca_path), "Error loading from CAPath: no CAs found");
    let version = TlsStanza { tls_min_version: Some("TLSv1_4".to_owned()), ..stanza(&cert, &key) };
    assert_eq!(
        refusal(&version),
        "TLSMinVersion: value TLSv1_4 not supported, please specify one of [TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]"
    );
    let suites =
        TlsStanza { tls_cipher_suites: Some("TLS_RSA_WITH_RC4_128_SHA".to_owned()), ..stanza(&cert, &key) };
    assert_eq!(refusal(&suites), "unsupported cipher \"TLS_RSA_WITH_RC4_128_SHA\"");
}

#[test]
fn what_rustls_cannot_offer_is_warned_of_and_the_rest_is_kept() {
    let dir = scratch("warnings");
    let (cert, key) = pair(&dir);
    let settings = TlsStanza {
        tls_min_version: Some("tls10".to_owned()),
        tls_cipher_suites: Some(
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned(),
        ),
        ..stanza(&cert, &key)
    };
    let (_, warnings) = Https::new(&settings, 8501, HANDSHAKE_TIMEOUT_DEFAULT).unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"), "{warnings:?}");
    assert!(warnings[1].contains("1.2 and 1.3 only"), "{warnings:?}");
    let mut none = Vec::new();
    let provider = provider_for(&settings, &mut none).unwrap();
    let names: Vec<_> = provider.cipher_suites.iter().map(|suite| suite.suite().as_str().unwrap()).collect();
    assert!(names.contains(&"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"), "{names:?}");
    assert!(!names.contains(&"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"), "{names:?}");
    assert!(names.iter().any(|name| name.starts_with("TLS13_")), "TLS 1.3 keeps its suites: {names:?}");
}

#[test]
fn a_ca_file_names_who_may_connect_when_verify_incoming_is_on() {
    let dir = scratch("verify");
    let (cert, key) = pair(&dir);
    let settings =
        TlsStanza { verify_incoming: Some(true), ca_file: Some(cert.clone()), ..stanza(&cert, &key) };
    assert!(Https::new(&settings, 8501, HANDSHAKE_TIMEOUT_DEFAULT).is_ok());
    let ca_dir = scratch("verify-ca-path");
    std::fs::copy(&cert, ca_dir.join("ca.pem")).unwrap();
    let settings = TlsStanza { ca_file: None, ca_path: Some(ca_dir.display().to_string()), ..settings };
    assert!(Https::new(&settings, 8501, HANDSHAKE_TIMEOUT_DEFAULT).is_ok());
}
