use super::*;

fn cert_args(flags: &[&str]) -> CertCreateArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: CertCreateArgs,
    }
    let argv = std::iter::once("create").chain(flags.iter().copied());
    Command::try_parse_from(argv).expect("the flags parse").args
}

fn ca_plan(constraints: &[&str]) -> CaPlan<'static> {
    CaPlan {
        days: CA_DAYS_DEFAULT,
        common_name: "",
        spiffe_host: None,
        constraints: constraints.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// Every extension of a certificate: (OID arcs, critical, value).
fn extensions(certificate: &[u8]) -> Vec<(Vec<u64>, bool, Vec<u8>)> {
    let mut outer = der::Reader::new(der::Reader::new(certificate).expect(der::SEQUENCE).unwrap());
    let mut tbs = der::Reader::new(outer.expect(der::SEQUENCE).unwrap());
    let mut content = None;
    while !tbs.is_empty() {
        let (tag, c, _) = tbs.next().unwrap();
        content = (tag == der::CONTEXT_3).then_some(c);
    }
    let mut list = der::Reader::new(der::Reader::new(content.unwrap()).expect(der::SEQUENCE).unwrap());
    let mut out = Vec::new();
    while !list.is_empty() {
        let mut extension = der::Reader::new(list.expect(der::SEQUENCE).unwrap());
        let oid = der::oid_arcs(extension.expect(der::OID).unwrap()).unwrap();
        let (tag, mut value, _) = extension.next().unwrap();
        let critical = tag == 0x01 && value == [0xff];
        if tag == 0x01 {
            value = extension.expect(der::OCTET_STRING).unwrap();
        }
        out.push((oid, critical, value.to_vec()));
    }
    out
}

fn find<'a>(all: &'a [(Vec<u64>, bool, Vec<u8>)], oid: &[u64]) -> Option<(bool, &'a [u8])> {
    all.iter().find(|(o, _, _)| o == oid).map(|(_, critical, value)| (*critical, value.as_slice()))
}

fn authority(made: &Made) -> Authority {
    let key = signer_from_pem(made.key_pem.as_bytes()).unwrap();
    Authority::load(made.cert_pem.as_bytes(), key).unwrap()
}

#[test]
fn a_ca_is_shaped_as_consuls_generate_ca_shapes_it() {
    let made = make_ca(&ca_plan(&["example.test", "consul", "localhost"]), unix_now()).unwrap();
    assert!(made.key_pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    assert!(made.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(made.cert_pem.lines().all(|line| line.len() <= PEM_LINE_CHARS));
    let der = made.cert_der.as_ref();
    let tbs = der::Tbs::parse(der).unwrap();
    assert_eq!(tbs.issuer, tbs.subject, "self-signed");
    let subject = subject_for_rcgen(tbs.subject_content).unwrap();
    let kinds: Vec<_> = subject.iter().map(|(kind, _)| kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            DnType::CountryName,
            DnType::StateOrProvinceName,
            DnType::LocalityName,
            DnType::CustomDnType(OID_STREET_ADDRESS.to_vec()),
            DnType::CustomDnType(OID_POSTAL_CODE.to_vec()),
            DnType::OrganizationName,
            DnType::CommonName,
        ]
    );
    let Some(DnValue::PrintableString(name)) = subject.get(&DnType::CommonName) else { panic!() };
    let serial: u128 = name.as_str().strip_prefix("Consul Agent CA ").unwrap().parse().unwrap();
    assert!(serial > 0);

    let all = extensions(der);
    assert_eq!(find(&all, OID_KEY_USAGE), Some((true, KEY_USAGE_CA)));
    assert_eq!(find(&all, OID_BASIC_CONSTRAINTS), Some((true, BASIC_CONSTRAINTS_CA)));
    let key = signer_from_pem(made.key_pem.as_bytes()).unwrap();
    let id = der::tlv(der::OCTET_STRING, &Sha256::digest(key.public_key_der()));
    assert_eq!(find(&all, OID_SUBJECT_KEY_ID), Some((false, id.as_slice())));
    assert_eq!(tbs.key_id.unwrap().len(), 32);
    // The authority key ID is SEQUENCE { [0] the subject key ID }.
    let aki = find(&all, &[2, 5, 29, 35]).unwrap();
    assert_eq!(aki.1[4..], *tbs.key_id.unwrap());
    // Name constraints, critical: permitted DNS subtrees in the order given.
    let (critical, constraints) = find(&all, &[2, 5, 29, 30]).unwrap();
    assert!(critical);
    let text = String::from_utf8_lossy(constraints);
    let at = |s: &str| text.find(s).unwrap();
    assert!(at("example.test") < at("consul") && at("consul") < at("localhost"));
    assert_eq!(find(&all, &[2, 5, 29, 37]), None, "no extended key usage on a CA");
}

#[test]
fn certificates_are_shaped_as_consuls_generate_cert_shapes_them() {
    let ca = make_ca(&ca_plan(&[]), unix_now()).unwrap();
    let authority = authority(&ca);
    let ca_tbs = der::Tbs::parse(ca.cert_der.as_ref()).unwrap();
    const SERVER_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
    const CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];
    for (flags, usages) in [
        (&["--server"][..], Some(vec![SERVER_AUTH, CLIENT_AUTH])),
        (&["--client"][..], Some(vec![CLIENT_AUTH, SERVER_AUTH])),
        (&["--cli"][..], None),
    ] {
        let args = cert_args(flags);
        let leaf = Leaf::plan(&args, Kind::from_flags(args.server, args.client, args.cli).unwrap());
        let made = issue(&authority, &leaf, CERT_DAYS_DEFAULT, unix_now()).unwrap();
        let der = made.cert_der.as_ref();
        let tbs = der::Tbs::parse(der).unwrap();
        assert_eq!(tbs.issuer, ca_tbs.subject, "{flags:?}");
        let all = extensions(der);
        assert_eq!(find(&all, OID_KEY_USAGE), Some((true, KEY_USAGE_LEAF)), "{flags:?}");
        assert_eq!(find(&all, OID_BASIC_CONSTRAINTS), Some((true, BASIC_CONSTRAINTS_LEAF)));
        let key = signer_from_pem(made.key_pem.as_bytes()).unwrap();
        assert_eq!(tbs.key_id.unwrap(), Sha256::digest(key.public_key_der()).as_slice());
        let aki = find(&all, &[2, 5, 29, 35]).unwrap();
        assert_eq!(aki.1[4..], *ca_tbs.key_id.unwrap(), "the CA's key ID");
        let eku = find(&all, &[2, 5, 29, 37]).map(|(critical, value)| {
            let mut oids = der::Reader::new(der::Reader::new(value).expect(der::SEQUENCE).unwrap());
            let mut found = Vec::new();
            while !oids.is_empty() {
                found.push(der::oid_arcs(oids.expect(der::OID).unwrap()).unwrap());
            }
            (critical, found)
        });
        let usages = usages.map(|u| (false, u.iter().map(|oid| oid.to_vec()).collect::<Vec<_>>()));
        assert_eq!(eku, usages, "{flags:?}");
        verify(&authority.roots, &made, &leaf).unwrap();
        let elsewhere = Leaf { name: "elsewhere.example".to_owned(), ..leaf };
        assert_eq!(
            verify(&authority.roots, &made, &elsewhere).unwrap_err().to_string(),
            format!(
                "x509: certificate is valid for {}, not elsewhere.example",
                elsewhere.dns_names.join(", ")
            )
        );
    }
}

#[test]
fn names_follow_consuls_order_for_each_kind() {
    let args = cert_args(&[
        "--server",
        "--node=n1",
        "--additional-dnsname=x.example",
        "--additional-dnsname=",
        "--additional-dnsname= y.example ",
        "--additional-ipaddress=10.0.0.9",
        "--additional-ipaddress=nope",
    ]);
    let leaf = Leaf::plan(&args, Kind::Server);
    assert_eq!(leaf.name, "server.dc1.consul");
    assert_eq!(
        leaf.dns_names,
        ["x.example", "y.example", "n1.server.dc1.consul", "server.dc1.consul", "localhost"]
    );
    assert_eq!(
        leaf.ip_addresses,
        [Some("10.0.0.9".parse().unwrap()), None, Some("127.0.0.1".parse().unwrap())]
    );
    assert_eq!(leaf.prefix, "dc1-server-consul");

    let args = cert_args(&[
        "--cli",
        "--dc=dc2",
        "--domain=nomad",
        "--additional-dnsname=x",
        "--additional-ipaddress=::1",
    ]);
    let leaf = Leaf::plan(&args, Kind::Cli);
    assert_eq!(leaf.dns_names, ["cli.dc2.nomad", "localhost"], "Consul drops the extra names");
    assert_eq!(leaf.ip_addresses, [Some("::1".parse().unwrap())], "but keeps the addresses");
    assert_eq!(leaf.prefix, "dc2-cli-nomad");

    let refused = |s, c, l| Kind::from_flags(s, c, l).unwrap_err().to_string();
    for (s, c, l) in [(false, false, false), (true, true, false), (true, false, true), (true, true, true)] {
        assert_eq!(refused(s, c, l), "Please provide either -server, -client, or -cli");
    }
}

#[test]
fn keys_round_trip_through_gos_sec1_form() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let sec1 = sec1_from_pkcs8(&key.serialize_der());
    // Go's MarshalECPrivateKey for P-256: 121 bytes, version 1, the curve named, the point.
    assert_eq!(sec1.len(), 121);
    assert_eq!(sec1[..7], [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20]);
    assert_eq!(sec1[39..51], [0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
    let again = signer_from_pem(pem("EC PRIVATE KEY", &sec1).as_bytes()).unwrap();
    assert_eq!(again.public_key_raw(), key.public_key_raw());
    let pkcs8 = signer_from_pem(pem("PRIVATE KEY", &key.serialize_der()).as_bytes()).unwrap();
    assert_eq!(pkcs8.public_key_raw(), key.public_key_raw());

    let refused = |text: &str| signer_from_pem(text.as_bytes()).unwrap_err().to_string();
    assert_eq!(refused("nothing"), "no PEM-encoded data found");
    assert_eq!(
        refused(&pem("CERTIFICATE", &[0x30, 0])),
        "unknown PEM block type for signing key: CERTIFICATE"
    );
    assert_eq!(refused(&pem("EC PRIVATE KEY", &[0x30, 0])), "x509: failed to parse EC private key");
}

#[test]
fn a_ca_with_another_key_is_refused_in_gos_words() {
    let ca = make_ca(&ca_plan(&[]), unix_now()).unwrap();
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let refused = Authority::load(ca.cert_pem.as_bytes(), other).err().unwrap().to_string();
    assert_eq!(
        refused,
        "failed to create certificate: x509: provided PrivateKey doesn't match parent's PublicKey"
    );
    let key = || signer_from_pem(ca.key_pem.as_bytes()).unwrap();
    let refused = |pem: &str| Authority::load(pem.as_bytes(), key()).err().unwrap().to_string();
    assert_eq!(refused(""), "failed to parse CA: no PEM-encoded data found");
    assert_eq!(refused(&ca.key_pem), "failed to parse CA: first PEM-block should be CERTIFICATE type");
    assert_eq!(
        refused(&pem("CERTIFICATE", &[0x30, 0x01])),
        "failed to parse CA: x509: malformed certificate"
    );
}

#[test]
fn validity_outside_generalized_time_is_refused_in_gos_words() {
    let now = 1_700_000_000;
    let mut params = CertificateParams::default();
    assert_eq!(set_validity(&mut params, now, 365).unwrap(), now + 365 * SECONDS_PER_DAY);
    assert_eq!(params.not_before.unix_timestamp(), now);
    assert_eq!(set_validity(&mut params, now, -2).unwrap(), now - 2 * SECONDS_PER_DAY);
    for days in [3_000_000, -800_000, i64::MAX, i64::MIN] {
        assert_eq!(
            set_validity(&mut params, now, days).unwrap_err().to_string(),
            "asn1: structure error: cannot represent time as GeneralizedTime"
        );
    }
    assert_eq!(super::super::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(super::super::rfc3339(-1), "1969-12-31T23:59:59Z");
    assert_eq!(super::super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(super::super::rfc3339(GENERALIZED_TIME_MIN), "0000-01-01T00:00:00Z");
    assert_eq!(super::super::rfc3339(GENERALIZED_TIME_MAX), "9999-12-31T23:59:59Z");
    assert_eq!(
        VerifyError::Expired { now: 1_700_000_001, not_after: now }.to_string(),
        "x509: certificate has expired or is not yet valid: current time 2023-11-14T22:13:21Z is \
         after 2023-11-14T22:13:20Z"
    );
}

#[test]
fn dn_values_take_gos_string_types() {
    assert!(matches!(go_string("Consul Agent CA 12345"), DnValue::PrintableString(_)));
    assert!(matches!(go_string("HashiCorp Inc."), DnValue::PrintableString(_)));
    for text in ["a_b", "a*b", "a&b", "é", "what?"] {
        assert!(matches!(go_string(text), DnValue::Utf8String(_)), "{text}");
    }
}

#[test]
fn der_reads_refuse_what_is_not_der() {
    assert_eq!(der::oid_arcs(&[0x55, 0x1d, 0x0e]).unwrap(), [2, 5, 29, 14]);
    assert_eq!(
        der::oid_arcs(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]).unwrap(),
        [1, 2, 840, 10045, 3, 1, 7]
    );
    assert_eq!(der::oid_arcs(&[0x86]), Err(der::Malformed));
    assert_eq!(der::tlv(der::OCTET_STRING, &[7; 200])[..3], [0x04, 0x81, 200]);
    for bad in [&[][..], &[0x30], &[0x30, 0x05, 0], &[0x30, 0x80], &[0x1f, 0], &[0x30, 0x85, 0, 0, 0, 0, 1]] {
        assert!(der::Reader::new(bad).next().is_err(), "{bad:?}");
        assert!(der::Tbs::parse(bad).is_err());
    }
}
