//! `muster tls ca create` and `muster tls cert create` (`../shared/reference/consul-wave2.md`
//! §2.2): Consul's built-in helpers that make an agent CA, then server, client and CLI
//! certificates signed by it, with Consul's flags, file names, file modes, lines and exit codes,
//! and certificates shaped as Consul's `tlsutil.GenerateCA` and `GenerateCert` shape them, so
//! that files made by either tool serve the other's agents.
//!
//! What is made, as Consul makes it:
//! - keys: ECDSA P-256, in SEC1 `EC PRIVATE KEY` PEM (Go's `x509.MarshalECPrivateKey`, curve
//!   named, public key included), mode 0600; certificates mode 0666 less the umask. Each file
//!   is written under a temporary name, synced, then renamed into place (Consul's
//!   `file.WriteAtomicWithPerms`), and never over a file already there.
//! - serial numbers: 128 random bits. The CA's common name is `Consul Agent CA <serial in
//!   decimal>` unless `-common-name` names it; its subject carries HashiCorp's address, in Go's
//!   attribute order (C, ST, L, street, postalCode, O, CN), as Consul's does.
//! - key identifiers: SHA-256 of the key's SubjectPublicKeyInfo, all 32 bytes. A CA's authority
//!   key ID is its own; a certificate's is the CA's subject key ID, read from the CA file.
//! - validity: from now (no backdating) for `-days` days; a CA's `-days 0` means 365.
//! - key usage, basic constraints and the subject key ID are written byte for byte as Go writes
//!   them (rcgen's own encodings differ: a 9-bit key usage, an explicit `cA FALSE`).
//! - a new certificate is verified against the CA for its own name before it is written, as
//!   Consul's `tlsutil.Verify` does; here with rustls's WebPKI verifier.
//!
//! Where muster departs from Consul:
//! - `-days` adds that many 24-hour days; Go adds calendar days in the local zone, an hour more
//!   or less across a daylight-saving change.
//! - a verification failure is worded as Go's for those these commands meet (expired, outside the
//!   CA's name constraints, unknown authority), without Go's detail of which name broke a
//!   constraint.
//! - a CA key is read as EC (P-256, P-384), PKCS#8 (EC, RSA, Ed25519) or PKCS#1 RSA PEM, from
//!   the first PEM block of a kind rustls knows: openssl's `EC PARAMETERS` block before a key is
//!   skipped, where Go refuses it as the first block.
//! - a CA whose subject rcgen cannot write back byte for byte (a multi-valued RDN, one attribute
//!   type twice, a string type other than UTF8String, PrintableString or IA5String, a `?` in a
//!   PrintableString) is refused, rather than signed for with an issuer name that would not
//!   chain to it. For the same reason a `?` in `-common-name` makes it a UTF8String, where Go
//!   writes a PrintableString.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose,
    GeneralSubtree, Ia5String, KeyIdMethod, KeyPair, NameConstraints, PrintableString, SanType, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use super::{CliError, FileError, Outcome};

/// `muster tls <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Helpers for CAs.
    #[command(subcommand, after_help = CA_EXAMPLES)]
    Ca(CaCommand),
    /// Helpers for certificates.
    #[command(subcommand, after_help = CERT_EXAMPLES)]
    Cert(CertCommand),
}

/// `muster tls ca <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a new consul CA: `<domain>-agent-ca.pem` and `<domain>-agent-ca-key.pem`.
    Create(CaCreateArgs),
}

/// `muster tls cert <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Create a new certificate: `<dc>-<kind>-<domain>-<n>.pem` and its `-key.pem`.
    Create(CertCreateArgs),
}

/// Flags of `muster tls ca create` (Consul's `command/tls/ca/create`).
#[derive(Debug, Args)]
pub(crate) struct CaCreateArgs {
    /// Number of days the CA is valid for (0: 365, as in Consul).
    #[arg(long, default_value_t = CA_DAYS_DEFAULT, allow_negative_numbers = true)]
    days: i64,
    /// The cluster's DNS domain: the files' prefix, and a name constraint with -name-constraint.
    #[arg(long, default_value = DOMAIN_DEFAULT)]
    domain: String,
    /// Adds X.509 name constraints: the CA then signs only for localhost, -domain and each
    /// -additional-name-constraint.
    #[arg(long = "name-constraint")]
    name_constraint: bool,
    /// Another DNS domain the CA may sign for, with -name-constraint. Repeatable.
    #[arg(long = "additional-name-constraint")]
    additional_name_constraint: Vec<String>,
    /// The cluster's ID: the CA's URI becomes the SPIFFE ID `spiffe://<cluster-id>.<domain>`.
    #[arg(long = "cluster-id", default_value = "")]
    cluster_id: String,
    /// The CA's common name. Defaults to `Consul Agent CA <serial number>`.
    #[arg(long = "common-name", default_value = "")]
    common_name: String,
    /// Arguments after the flags, which Consul ignores.
    #[arg(hide = true)]
    args: Vec<String>,
}

/// Flags of `muster tls cert create` (Consul's `command/tls/cert/create`).
#[derive(Debug, Args)]
pub(crate) struct CertCreateArgs {
    /// A server certificate: `server.<dc>.<domain>`, for server and client authentication.
    #[arg(long)]
    server: bool,
    /// A client agent's certificate: `client.<dc>.<domain>`.
    #[arg(long)]
    client: bool,
    /// A certificate for the CLI: `cli.<dc>.<domain>`.
    #[arg(long)]
    cli: bool,
    /// With -server, also the name `<node>.server.<dc>.<domain>`.
    #[arg(long, default_value = "")]
    node: String,
    /// The datacenter.
    #[arg(long, default_value = DC_DEFAULT)]
    dc: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = DOMAIN_DEFAULT)]
    domain: String,
    /// Number of days the certificate is valid for.
    #[arg(long, default_value_t = CERT_DAYS_DEFAULT, allow_negative_numbers = true)]
    days: i64,
    /// Another DNS name in the certificate (localhost always is). Repeatable.
    #[arg(long = "additional-dnsname")]
    additional_dnsname: Vec<String>,
    /// Another IP address in the certificate (127.0.0.1 always is, but for -cli). Repeatable.
    #[arg(long = "additional-ipaddress")]
    additional_ipaddress: Vec<String>,
    /// The CA certificate; `#DOMAIN#` stands for -domain.
    #[arg(long, default_value = CA_FILE_DEFAULT)]
    ca: String,
    /// The CA's key; `#DOMAIN#` stands for -domain.
    #[arg(long, default_value = CA_KEY_FILE_DEFAULT)]
    key: String,
    /// Arguments after the flags, which Consul ignores.
    #[arg(hide = true)]
    args: Vec<String>,
}

/// Runs a `muster tls` command.
pub(crate) fn run(command: TlsCommand) -> Outcome {
    let done = match command {
        TlsCommand::Ca(CaCommand::Create(args)) => ca_create(&args),
        TlsCommand::Cert(CertCommand::Create(args)) => cert_create(&args),
    };
    done.map(|()| 0).map_err(CliError::from)
}

/// `tls ca create`: refuses if either file is there, then makes the CA and writes the
/// certificate, then the key, each announced once written.
fn ca_create(args: &CaCreateArgs) -> Result<(), TlsError> {
    let cert_file = format!("{}-agent-ca.pem", args.domain);
    let key_file = format!("{}-agent-ca-key.pem", args.domain);
    for file in [&cert_file, &key_file] {
        if !absent(file) {
            return Err(TlsError::Exists(file.clone()));
        }
    }
    // Consul lists the additional domains first.
    let constraints = if args.name_constraint {
        let own = [args.domain.clone(), LOCALHOST.to_owned()];
        args.additional_name_constraint.iter().cloned().chain(own).collect()
    } else {
        Vec::new()
    };
    let plan = CaPlan {
        days: if args.days == 0 { CA_DAYS_ZERO } else { args.days },
        common_name: &args.common_name,
        spiffe_host: (!args.cluster_id.is_empty())
            .then(|| format!("{}.{}", args.cluster_id, args.domain).to_lowercase()),
        constraints,
    };
    let made = make_ca(&plan, unix_now())?;
    write_atomic(&cert_file, made.cert_pem.as_bytes(), CERT_MODE)?;
    println!("==> Saved {cert_file}");
    write_atomic(&key_file, made.key_pem.as_bytes(), KEY_MODE)?;
    println!("==> Saved {key_file}");
    Ok(())
}

/// `tls cert create`, in Consul's order: the flags, the file names, the CA's files read, the
/// lines announcing them, the key, the certificate made and verified, then both files written.
fn cert_create(args: &CertCreateArgs) -> Result<(), TlsError> {
    if args.ca.is_empty() {
        return Err(TlsError::Usage("Please provide the ca"));
    }
    if args.key.is_empty() {
        return Err(TlsError::Usage("Please provide the key"));
    }
    let kind = Kind::from_flags(args.server, args.client, args.cli)?;
    if !args.node.is_empty() && kind != Kind::Server {
        return Err(TlsError::Usage("-node requires -server"));
    }
    let leaf = Leaf::plan(args, kind);
    let (cert_file, key_file) = free_file_names(&leaf.prefix)?;
    let ca_file = args.ca.replacen(DOMAIN_PLACEHOLDER, &args.domain, 1);
    let ca_key_file = args.key.replacen(DOMAIN_PLACEHOLDER, &args.domain, 1);
    let ca_pem = read(&ca_file, "Error reading CA")?;
    let ca_key_pem = read(&ca_key_file, "Error reading CA key")?;
    if kind == Kind::Server {
        println!("{SERVER_WARNING}");
    }
    println!("==> Using {ca_file} and {ca_key_file}");
    let ca_key = signer_from_pem(&ca_key_pem)?;
    let authority = Authority::load(&ca_pem, ca_key)?;
    let now = unix_now();
    let made = issue(&authority, &leaf, args.days, now)?;
    // Go writes an address its `net.ParseIP` refused as an empty IP entry, which its own parser
    // then refuses when Consul verifies the new certificate: the same refusal, in its words.
    if leaf.ip_addresses.iter().any(Option::is_none) {
        return Err(VerifyError::Certificate.into());
    }
    verify(&authority.roots, &made, &leaf)?;
    write_atomic(&cert_file, made.cert_pem.as_bytes(), CERT_MODE)?;
    println!("==> Saved {cert_file}");
    write_atomic(&key_file, made.key_pem.as_bytes(), KEY_MODE)?;
    println!("==> Saved {key_file}");
    Ok(())
}

/// Which certificate `tls cert create` makes: exactly one of `-server`, `-client`, `-cli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server,
    Client,
    Cli,
}

impl Kind {
    fn from_flags(server: bool, client: bool, cli: bool) -> Result<Kind, TlsError> {
        match (server, client, cli) {
            (true, false, false) => Ok(Kind::Server),
            (false, true, false) => Ok(Kind::Client),
            (false, false, true) => Ok(Kind::Cli),
            _ => Err(TlsError::Usage("Please provide either -server, -client, or -cli")),
        }
    }

    /// The word in the certificate's name and its files' names.
    fn word(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Cli => "cli",
        }
    }
}

/// What goes into one certificate, before any key is made.
#[derive(Debug, PartialEq, Eq)]
struct Leaf {
    /// `<kind>.<dc>.<domain>`: the common name, and the name it is verified for.
    name: String,
    /// The DNS names, in Consul's order.
    dns_names: Vec<String>,
    /// The IP addresses, in Consul's order; `None` for one Go's `net.ParseIP` refuses.
    ip_addresses: Vec<Option<IpAddr>>,
    usages: &'static [ExtendedKeyUsagePurpose],
    /// The files are `<prefix>-<n>.pem` and `<prefix>-<n>-key.pem`.
    prefix: String,
}

impl Leaf {
    /// Consul's names for `kind`: the extra names first (empty ones skipped, the rest trimmed),
    /// then the node's, the certificate's own and localhost; 127.0.0.1 last.
    fn plan(args: &CertCreateArgs, kind: Kind) -> Leaf {
        let name = format!("{}.{}.{}", kind.word(), args.dc, args.domain);
        let extra_names =
            args.additional_dnsname.iter().filter(|d| !d.is_empty()).map(|d| d.trim().to_owned());
        let mut ip_addresses: Vec<Option<IpAddr>> = args
            .additional_ipaddress
            .iter()
            .filter(|i| !i.is_empty())
            .map(|i| i.trim().parse().ok())
            .collect();
        let dns_names = match kind {
            Kind::Server => {
                let node = (!args.node.is_empty())
                    .then(|| format!("{}.server.{}.{}", args.node, args.dc, args.domain));
                extra_names.chain(node).chain([name.clone(), LOCALHOST.to_owned()]).collect()
            }
            Kind::Client => extra_names.chain([name.clone(), LOCALHOST.to_owned()]).collect(),
            // Consul replaces the list here: a CLI certificate drops -additional-dnsname (but
            // keeps -additional-ipaddress).
            Kind::Cli => vec![name.clone(), LOCALHOST.to_owned()],
        };
        if kind != Kind::Cli {
            ip_addresses.push(Some(IpAddr::from([127, 0, 0, 1])));
        }
        let usages: &'static [ExtendedKeyUsagePurpose] = match kind {
            Kind::Server => &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            Kind::Client => &[ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth],
            Kind::Cli => &[],
        };
        let prefix = format!("{}-{}-{}", args.dc, kind.word(), args.domain);
        Leaf { name, dns_names, ip_addresses, usages, prefix }
    }
}

/// What `tls ca create` asks for.
#[derive(Debug)]
struct CaPlan<'a> {
    days: i64,
    /// Empty: `Consul Agent CA <serial>`.
    common_name: &'a str,
    /// `-cluster-id`'s SPIFFE trust domain, `<cluster-id>.<domain>` lowercased.
    spiffe_host: Option<String>,
    /// The permitted DNS subtrees; none: no name constraints.
    constraints: Vec<String>,
}

/// A certificate and its new key, as their files hold them.
#[derive(Debug)]
struct Made {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    /// The end of its validity, in seconds since the Unix epoch.
    not_after: i64,
}

/// Makes a self-signed CA as Consul's `tlsutil.GenerateCA` does.
fn make_ca(plan: &CaPlan<'_>, now: i64) -> Result<Made, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TlsError::Key)?;
    let key_id = key_id(&key);
    let serial = random_serial()?;
    let name = match plan.common_name {
        "" => format!("Consul Agent CA {serial}"),
        name => name.to_owned(),
    };
    let mut params = CertificateParams::default();
    let not_after = set_validity(&mut params, now, plan.days).map_err(TlsError::CreateCa)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    params.distinguished_name = ca_subject(&name);
    if let Some(host) = &plan.spiffe_host {
        let uri = ia5(&format!("spiffe://{host}")).map_err(TlsError::CreateCa)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
    }
    if !plan.constraints.is_empty() {
        // rcgen takes these as plain strings (and would panic writing one that is not ASCII).
        for domain in &plan.constraints {
            ia5(domain).map_err(TlsError::CreateCa)?;
        }
        let permitted = plan.constraints.iter().cloned().map(GeneralSubtree::DnsName).collect();
        params.name_constraints =
            Some(NameConstraints { permitted_subtrees: permitted, excluded_subtrees: Vec::new() });
    }
    // Self-signed: its authority key ID is its own subject key ID.
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id.clone());
    params.custom_extensions = vec![
        extension(OID_KEY_USAGE, KEY_USAGE_CA.to_vec(), true),
        extension(OID_BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_CA.to_vec(), true),
        extension(OID_SUBJECT_KEY_ID, der::tlv(der::OCTET_STRING, &key_id), false),
    ];
    let cert = params.self_signed(&key).map_err(|e| TlsError::CreateCa(CreateError::Rcgen(e)))?;
    Ok(Made {
        cert_pem: pem("CERTIFICATE", cert.der()),
        key_pem: pem("EC PRIVATE KEY", &sec1_from_pkcs8(&key.serialize_der())),
        cert_der: cert.der().clone(),
        not_after,
    })
}

/// Consul's CA subject: HashiCorp's address, then the common name, in Go's attribute order.
fn ca_subject(common_name: &str) -> DistinguishedName {
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CountryName, go_string("US"));
    subject.push(DnType::StateOrProvinceName, go_string("CA"));
    subject.push(DnType::LocalityName, go_string("San Francisco"));
    subject.push(DnType::CustomDnType(OID_STREET_ADDRESS.to_vec()), go_string("101 Second Street"));
    subject.push(DnType::CustomDnType(OID_POSTAL_CODE.to_vec()), go_string("94105"));
    subject.push(DnType::OrganizationName, go_string("HashiCorp Inc."));
    subject.push(DnType::CommonName, go_string(common_name));
    subject
}

/// The CA that signs: its key, a stand-in certificate that carries its subject and key ID to
/// rcgen, and every certificate of its file (Consul verifies against them all).
struct Authority {
    key: KeyPair,
    issuer: rcgen::Certificate,
    /// The CA's subject, as encoded in its file: a new certificate's issuer must be these bytes.
    subject: Vec<u8>,
    has_key_id: bool,
    roots: Vec<CertificateDer<'static>>,
}

impl Authority {
    /// The CA of `ca_pem` with `key`, refused as Go's `GenerateCert` refuses one (the first
    /// certificate of the file is the CA).
    fn load(ca_pem: &[u8], key: KeyPair) -> Result<Authority, TlsError> {
        let ca = match <(SectionKind, Vec<u8>)>::from_pem_slice(ca_pem) {
            Ok((SectionKind::Certificate, der)) => der,
            Ok(_) => return Err(TlsError::Ca(CaError::NotCertificate)),
            Err(_) => return Err(TlsError::Ca(CaError::NoPem)),
        };
        let fields = der::Tbs::parse(&ca).map_err(|_| TlsError::Ca(CaError::Malformed))?;
        if fields.public_key != key.public_key_raw() {
            return Err(TlsError::Create(CreateError::KeyMismatch));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name =
            subject_for_rcgen(fields.subject_content).map_err(|_| TlsError::Create(CreateError::Subject))?;
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(fields.key_id.map(<[u8]>::to_vec).unwrap_or_default());
        let issuer = params.self_signed(&key).map_err(|e| TlsError::Create(CreateError::Rcgen(e)))?;
        let roots = CertificateDer::pem_slice_iter(ca_pem).filter_map(Result::ok).collect();
        Ok(Authority {
            subject: fields.subject.to_vec(),
            has_key_id: fields.key_id.is_some(),
            key,
            issuer,
            roots,
        })
    }
}

/// Makes a certificate for `leaf` signed by `authority`, as Consul's `tlsutil.GenerateCert`.
fn issue(authority: &Authority, leaf: &Leaf, days: i64, now: i64) -> Result<Made, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TlsError::Key)?;
    let key_id = key_id(&key);
    let serial = random_serial()?;
    let mut params = CertificateParams::default();
    let not_after = set_validity(&mut params, now, days).map_err(TlsError::Create)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, go_string(&leaf.name));
    for name in &leaf.dns_names {
        params.subject_alt_names.push(SanType::DnsName(ia5(name).map_err(TlsError::Create)?));
    }
    // Go writes an IPv4-mapped IPv6 address as its four IPv4 bytes.
    let addresses = leaf.ip_addresses.iter().flatten().map(|ip| ip.to_canonical());
    params.subject_alt_names.extend(addresses.map(SanType::IpAddress));
    params.extended_key_usages = leaf.usages.to_vec();
    params.use_authority_key_identifier_extension = authority.has_key_id;
    params.custom_extensions = vec![
        extension(OID_KEY_USAGE, KEY_USAGE_LEAF.to_vec(), true),
        extension(OID_BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_LEAF.to_vec(), true),
        extension(OID_SUBJECT_KEY_ID, der::tlv(der::OCTET_STRING, &key_id), false),
    ];
    let cert = params
        .signed_by(&key, &authority.issuer, &authority.key)
        .map_err(|e| TlsError::Create(CreateError::Rcgen(e)))?;
    let issuer = der::Tbs::parse(cert.der()).expect("rcgen writes a certificate muster reads").issuer;
    if issuer != authority.subject.as_slice() {
        return Err(TlsError::Create(CreateError::Subject));
    }
    Ok(Made {
        cert_pem: pem("CERTIFICATE", cert.der()),
        key_pem: pem("EC PRIVATE KEY", &sec1_from_pkcs8(&key.serialize_der())),
        cert_der: cert.der().clone(),
        not_after,
    })
}

/// Checks the new certificate `made` for `leaf` against the CA file's certificates for the
/// leaf's name, as Consul's `tlsutil.Verify`: with Go's check first, the certificate itself out
/// of date (Go compares to the nanosecond, so one made for 0 days is already out of date).
fn verify(roots: &[CertificateDer<'static>], made: &Made, leaf: &Leaf) -> Result<(), VerifyError> {
    let now = SystemTime::now();
    if now > unix_time(made.not_after) {
        return Err(VerifyError::Expired { now: unix_now(), not_after: made.not_after });
    }
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        return Err(VerifyError::Root);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .map_err(|_| VerifyError::Root)?;
    let name = leaf.name.as_str();
    let server_name = ServerName::try_from(name).map_err(|_| VerifyError::Name(name.to_owned()))?;
    let now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    match verifier.verify_server_cert(&made.cert_der, &[], &server_name, &[], now) {
        Ok(_) => Ok(()),
        // Go's `HostnameError` lists the certificate's DNS names.
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        )) => Err(VerifyError::Hostname { valid: leaf.dns_names.clone(), wanted: name.to_owned() }),
        Err(error) => Err(VerifyError::from(error)),
    }
}

/// Sets `params`' validity: from `now` for `days` days (seconds since the Unix epoch). Returns
/// the end, refused as Go's `asn1` refuses a time outside GeneralizedTime's years 0 to 9999.
fn set_validity(params: &mut CertificateParams, now: i64, days: i64) -> Result<i64, CreateError> {
    let not_after = days
        .checked_mul(SECONDS_PER_DAY)
        .and_then(|seconds| now.checked_add(seconds))
        .filter(|end| (GENERALIZED_TIME_MIN..=GENERALIZED_TIME_MAX).contains(end))
        .ok_or(CreateError::Time)?;
    // rcgen's dates are the `time` crate's; the epoch plus a std duration builds them without
    // naming that crate. Both ends are inside its range, checked above.
    let at = |unix: i64| {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let offset = Duration::from_secs(unix.unsigned_abs());
        if unix >= 0 {
            epoch + offset
        } else {
            epoch - offset
        }
    };
    params.not_before = at(now);
    params.not_after = at(not_after);
    Ok(not_after)
}

/// The SHA-256 of `key`'s SubjectPublicKeyInfo: Consul's `keyID`.
fn key_id(key: &KeyPair) -> Vec<u8> {
    Sha256::digest(key.public_key_der()).to_vec()
}

/// A serial number below 2^128 from the OS's randomness (Consul's `GenerateSerialNumber`).
fn random_serial() -> Result<u128, TlsError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider().secure_random.fill(&mut bytes).map_err(|_| TlsError::Random)?;
    Ok(u128::from_be_bytes(bytes))
}

/// A DN value as Go's `asn1` writes a string with no type given: PrintableString when every
/// character allows it, else UTF8String. `?` is left out of the printable set (Go allows it)
/// because yasna, which rcgen writes with, asserts it is not there.
fn go_string(text: &str) -> DnValue {
    let printable = text.bytes().all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=".contains(&b));
    match PrintableString::try_from(text) {
        Ok(value) if printable => DnValue::PrintableString(value),
        _ => DnValue::Utf8String(text.to_owned()),
    }
}

/// `name` as an IA5String, refused in Go's words if it is not ASCII.
fn ia5(name: &str) -> Result<Ia5String, CreateError> {
    Ia5String::try_from(name).map_err(|_| CreateError::NotIa5(name.to_owned()))
}

fn extension(oid: &[u64], content: Vec<u8>, critical: bool) -> CustomExtension {
    let mut extension = CustomExtension::from_oid_content(oid, content);
    extension.set_criticality(critical);
    extension
}

/// A DN's encoded content (the SET OF RDNs) as rcgen's `DistinguishedName`, which writes it back
/// byte for byte: one attribute per RDN, each type once, string types rcgen writes as read.
fn subject_for_rcgen(content: &[u8]) -> Result<DistinguishedName, der::Malformed> {
    let mut name = DistinguishedName::new();
    let mut rdns = der::Reader::new(content);
    while !rdns.is_empty() {
        let mut rdn = der::Reader::new(rdns.expect(der::SET)?);
        let mut attribute = der::Reader::new(rdn.expect(der::SEQUENCE)?);
        if !rdn.is_empty() {
            return Err(der::Malformed);
        }
        let kind = DnType::from_oid(&der::oid_arcs(attribute.expect(der::OID)?)?);
        let (tag, value, _) = attribute.next()?;
        let text = std::str::from_utf8(value).map_err(|_| der::Malformed)?;
        let value = match (tag, go_string(text)) {
            (der::UTF8_STRING, _) => DnValue::Utf8String(text.to_owned()),
            // Not every PrintableString: yasna refuses to write `?` (see `go_string`).
            (der::PRINTABLE_STRING, printable @ DnValue::PrintableString(_)) => printable,
            (der::IA5_STRING, _) => {
                DnValue::Ia5String(Ia5String::try_from(text).map_err(|_| der::Malformed)?)
            }
            _ => return Err(der::Malformed),
        };
        if !attribute.is_empty() || name.get(&kind).is_some() {
            return Err(der::Malformed);
        }
        name.push(kind, value);
    }
    Ok(name)
}

/// The CA's signing key from its PEM file, as Consul's `ParseSigner` reads it.
fn signer_from_pem(pem: &[u8]) -> Result<KeyPair, TlsError> {
    let (kind, der) = <(SectionKind, Vec<u8>)>::from_pem_slice(pem).map_err(|_| SignerError::NoPem)?;
    let (pkcs8, malformed) = match kind {
        SectionKind::EcPrivateKey => (pkcs8_from_sec1(&der), SignerError::Ec),
        SectionKind::RsaPrivateKey => (Ok(pkcs8_from_pkcs1(&der)), SignerError::Rsa),
        SectionKind::PrivateKey => (Ok(der), SignerError::Pkcs8),
        SectionKind::Certificate => return Err(SignerError::Unknown("CERTIFICATE").into()),
        SectionKind::PublicKey => return Err(SignerError::Unknown("PUBLIC KEY").into()),
        SectionKind::Crl => return Err(SignerError::Unknown("X509 CRL").into()),
        SectionKind::Csr => return Err(SignerError::Unknown("CERTIFICATE REQUEST").into()),
        _ => return Err(SignerError::Unknown("ECHCONFIG").into()),
    };
    let pkcs8 = pkcs8.map_err(|_| malformed)?;
    // ring loads ECDSA P-256 and P-384, Ed25519 and RSA keys; the signature algorithm follows
    // the key, as Go's does.
    KeyPair::try_from(pkcs8.as_slice()).map_err(|_| malformed.into())
}

/// Go's `x509.MarshalECPrivateKey` form (RFC 5915 with the curve named) of a key from ring's
/// PKCS#8 document, whose inner ECPrivateKey leaves the curve to the outer algorithm.
fn sec1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let read = || -> Result<Vec<u8>, der::Malformed> {
        let mut info = der::Reader::new(der::Reader::new(pkcs8).expect(der::SEQUENCE)?);
        info.expect(der::INTEGER)?;
        let mut algorithm = der::Reader::new(info.expect(der::SEQUENCE)?);
        algorithm.expect(der::OID)?;
        let curve = algorithm.expect_whole(der::OID)?;
        let mut key =
            der::Reader::new(der::Reader::new(info.expect(der::OCTET_STRING)?).expect(der::SEQUENCE)?);
        key.expect(der::INTEGER)?;
        let private = key.expect(der::OCTET_STRING)?;
        key.skip(der::CONTEXT_0)?;
        let public = key.expect(der::CONTEXT_1)?;
        let fields = [
            der::tlv(der::INTEGER, &[1]),
            der::tlv(der::OCTET_STRING, private),
            der::tlv(der::CONTEXT_0, curve),
            der::tlv(der::CONTEXT_1, public),
        ];
        Ok(der::tlv(der::SEQUENCE, &fields.concat()))
    };
    read().expect("ring's PKCS#8 document for an EC key it generated")
}

/// A SEC1 EC key wrapped as PKCS#8 (what ring loads), its curve from the key's parameters.
fn pkcs8_from_sec1(sec1: &[u8]) -> Result<Vec<u8>, der::Malformed> {
    let mut key = der::Reader::new(der::Reader::new(sec1).expect(der::SEQUENCE)?);
    key.expect(der::INTEGER)?;
    key.expect(der::OCTET_STRING)?;
    // Go's parser needs the curve named here too.
    let curve = der::Reader::new(key.expect(der::CONTEXT_0)?).expect_whole(der::OID)?;
    let algorithm = der::tlv(der::SEQUENCE, &[OID_EC_PUBLIC_KEY, curve].concat());
    let fields = [der::tlv(der::INTEGER, &[0]), algorithm, der::tlv(der::OCTET_STRING, sec1)];
    Ok(der::tlv(der::SEQUENCE, &fields.concat()))
}

/// A PKCS#1 RSA key wrapped as PKCS#8.
fn pkcs8_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    let algorithm = der::tlv(der::SEQUENCE, &[OID_RSA_ENCRYPTION, DER_NULL].concat());
    let fields = [der::tlv(der::INTEGER, &[0]), algorithm, der::tlv(der::OCTET_STRING, pkcs1)];
    der::tlv(der::SEQUENCE, &fields.concat())
}

/// PEM as Go's `pem.Encode` writes it: 64 base64 characters a line, `\n` line ends.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(PEM_LINE_CHARS) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// The first `<prefix>-<n>.pem`, `<prefix>-<n>-key.pem` pair of which neither file is there.
fn free_file_names(prefix: &str) -> Result<(String, String), TlsError> {
    (0..=FILE_INDEX_MAX)
        .map(|index| (format!("{prefix}-{index}.pem"), format!("{prefix}-{index}-key.pem")))
        .find(|(cert, key)| absent(cert) && absent(key))
        .ok_or(TlsError::NoFreeName)
}

/// Whether `path` is not there, as Go's `os.IsNotExist(os.Stat(path))` (any other failure to
/// look counts as there).
fn absent(path: &str) -> bool {
    matches!(std::fs::metadata(path), Err(error) if error.kind() == std::io::ErrorKind::NotFound)
}

fn read(path: &str, doing: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { doing, source: FileError::at(path)(source) })
}

/// Writes `contents` to `path` as Consul's `file.WriteAtomicWithPerms`: a new file beside it,
/// created with `mode` (less the umask), synced, then renamed over `path`; removed on failure.
fn write_atomic(path: &str, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    let temp = format!("{path}-{}.tmp", uuid::Uuid::new_v4());
    let written = write_synced(&temp, contents, mode).and_then(|()| {
        std::fs::rename(&temp, path).map_err(|source| WriteError::Io {
            doing: "rename",
            path: format!("{temp} {path}"),
            source,
        })
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

fn write_synced(path: &str, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| WriteError::Open(FileError::at(path)(source)))?;
    let io = |doing| move |source| WriteError::Io { doing, path: path.to_owned(), source };
    file.write_all(contents).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))
}

/// Seconds since the Unix epoch, now (0 for a clock before it).
fn unix_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

fn unix_time(seconds: i64) -> SystemTime {
    let offset = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

/// Why a `muster tls` command failed, in Consul's words.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// Flags that do not go together, or a required one empty.
    #[error("{0}")]
    Usage(&'static str),
    /// A file the command would write is there already.
    #[error("{0} already exists.")]
    Exists(String),
    /// Every file index up to [`FILE_INDEX_MAX`] is taken.
    #[error("Could not find a filename that doesn't already exist")]
    NoFreeName,
    /// The CA certificate or its key could not be read.
    #[error("{doing}: {source}")]
    Read {
        /// Consul's words for which file.
        doing: &'static str,
        source: FileError,
    },
    /// The CA's key is not a key this command signs with.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The CA file holds no CA certificate.
    #[error("failed to parse CA: {0}")]
    Ca(CaError),
    /// The certificate could not be made.
    #[error("failed to create certificate: {0}")]
    Create(CreateError),
    /// The CA could not be made.
    #[error("error generating CA certificate: {0}")]
    CreateCa(CreateError),
    /// No key could be generated.
    #[error("error generating ECDSA private key: {0}")]
    Key(rcgen::Error),
    /// The OS gave no random bytes for a serial number.
    #[error("error generating serial number: no random bytes from the OS")]
    Random,
    /// The new certificate does not verify against its CA.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<TlsError> for CliError {
    fn from(error: TlsError) -> CliError {
        match error {
            TlsError::Usage(text) => CliError::usage(text),
            TlsError::Read { doing, source } => CliError::File { doing, source },
            other => CliError::refused(other.to_string()),
        }
    }
}

/// Why the CA's key was refused (Consul's `ParseSigner`, Go's `x509` parsers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignerError {
    #[error("no PEM-encoded data found")]
    NoPem,
    #[error("unknown PEM block type for signing key: {0}")]
    Unknown(&'static str),
    #[error("x509: failed to parse EC private key")]
    Ec,
    #[error("x509: failed to parse RSA private key")]
    Rsa,
    #[error("x509: failed to parse private key")]
    Pkcs8,
}

/// Why the CA file's certificate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CaError {
    #[error("no PEM-encoded data found")]
    NoPem,
    #[error("first PEM-block should be CERTIFICATE type")]
    NotCertificate,
    #[error("x509: malformed certificate")]
    Malformed,
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    /// The CA's key is not the CA certificate's.
    #[error("x509: provided PrivateKey doesn't match parent's PublicKey")]
    KeyMismatch,
    /// A name that is not ASCII.
    #[error("x509: {0:?} cannot be encoded as an IA5String")]
    NotIa5(String),
    /// The end of validity is outside the years GeneralizedTime holds.
    #[error("asn1: structure error: cannot represent time as GeneralizedTime")]
    Time,
    /// A CA subject rcgen cannot write back byte for byte (a muster limit; see the module doc).
    #[error("muster cannot write the CA's subject name back as it is encoded")]
    Subject,
    #[error("{0}")]
    Rcgen(rcgen::Error),
}

/// Why a new certificate does not verify against its CA (Go's `x509` words).
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    /// Out of date at the time of checking (seconds since the Unix epoch).
    #[error(
        "x509: certificate has expired or is not yet valid: current time {} is after {}",
        super::rfc3339(*now),
        super::rfc3339(*not_after)
    )]
    Expired { now: i64, not_after: i64 },
    /// Out of date, or not yet valid, without the times.
    #[error("x509: certificate has expired or is not yet valid")]
    Validity,
    /// A name outside the CA's name constraints.
    #[error("x509: a root or intermediate certificate is not authorized to sign for this name")]
    NameConstraint,
    /// Not signed by the CA.
    #[error("x509: certificate signed by unknown authority")]
    UnknownAuthority,
    /// The certificate's own name is not one a certificate can be verified for.
    #[error("x509: certificate is not valid for {0}")]
    Name(String),
    /// The certificate does not carry its own name (only a bug in muster gets here).
    #[error("x509: certificate is valid for {}, not {wanted}", valid.join(", "))]
    Hostname { valid: Vec<String>, wanted: String },
    /// No certificate of the CA file can be a trust anchor.
    #[error("failed to parse root certificate")]
    Root,
    /// The new certificate holds what Go's parser refuses.
    #[error("failed to parse certificate")]
    Certificate,
    #[error("x509: {0}")]
    Other(rustls::Error),
}

impl From<rustls::Error> for VerifyError {
    fn from(error: rustls::Error) -> VerifyError {
        use rustls::CertificateError as Cert;
        let rustls::Error::InvalidCertificate(cert) = error else { return VerifyError::Other(error) };
        let seconds = |time: UnixTime| i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
        match cert {
            Cert::ExpiredContext { time, not_after } => {
                VerifyError::Expired { now: seconds(time), not_after: seconds(not_after) }
            }
            Cert::Expired | Cert::NotValidYet | Cert::NotValidYetContext { .. } => VerifyError::Validity,
            Cert::UnknownIssuer | Cert::BadSignature => VerifyError::UnknownAuthority,
            // rustls passes webpki's `NameConstraintViolation` on only as an opaque error, whose
            // text is the variant's name.
            Cert::Other(other) if other.to_string() == "NameConstraintViolation" => {
                VerifyError::NameConstraint
            }
            cert => VerifyError::Other(rustls::Error::InvalidCertificate(cert)),
        }
    }
}

/// Why a file could not be written, as Go's `os` words it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Open(FileError),
    #[error("{doing} {path}: {source}")]
    Io {
        /// Go's name for the call that failed.
        doing: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Just enough DER for what rcgen leaves out: reading a CA certificate's subject, public key and
/// key ID, converting key formats, and writing the few extensions muster encodes itself. Every
/// read is checked: a malformed input is an error, never a panic.
mod der {
    pub(super) const INTEGER: u8 = 0x02;
    pub(super) const BIT_STRING: u8 = 0x03;
    pub(super) const OCTET_STRING: u8 = 0x04;
    pub(super) const OID: u8 = 0x06;
    pub(super) const UTF8_STRING: u8 = 0x0c;
    pub(super) const PRINTABLE_STRING: u8 = 0x13;
    pub(super) const IA5_STRING: u8 = 0x16;
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const SET: u8 = 0x31;
    pub(super) const CONTEXT_0: u8 = 0xa0;
    pub(super) const CONTEXT_1: u8 = 0xa1;
    pub(super) const CONTEXT_3: u8 = 0xa3;

    /// Bytes that are not the DER expected.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Malformed;

    /// Reads DER elements one after another.
    pub(super) struct Reader<'a> {
        rest: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(input: &'a [u8]) -> Reader<'a> {
            Reader { rest: input }
        }

        pub(super) fn is_empty(&self) -> bool {
            self.rest.is_empty()
        }

        /// The next element: its tag, its content, and the whole of it.
        pub(super) fn next(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), Malformed> {
            let (&tag, after_tag) = self.rest.split_first().ok_or(Malformed)?;
            // Only low tag numbers (all X.509 uses).
            if tag & 0x1f == 0x1f {
                return Err(Malformed);
            }
            let (&first, after_length) = after_tag.split_first().ok_or(Malformed)?;
            let (length, content_start) = match first {
                0..=0x7f => (usize::from(first), after_length),
                0x81..=0x84 => {
                    let count = usize::from(first & 0x7f);
                    let bytes = after_length.get(..count).ok_or(Malformed)?;
                    let length = bytes.iter().fold(0usize, |sum, &b| (sum << 8) | usize::from(b));
                    (length, &after_length[count..])
                }
                _ => return Err(Malformed),
            };
            let content = content_start.get(..length).ok_or(Malformed)?;
            let whole_length = self.rest.len() - content_start.len() + length;
            let whole = &self.rest[..whole_length];
            self.rest = &content_start[length..];
            Ok((tag, content, whole))
        }

        /// The next element's content; it must carry `tag`.
        pub(super) fn expect(&mut self, tag: u8) -> Result<&'a [u8], Malformed> {
            self.expect_whole(tag).and_then(|whole| Reader::new(whole).next().map(|(_, content, _)| content))
        }

        /// The whole next element; it must carry `tag`.
        pub(super) fn expect_whole(&mut self, tag: u8) -> Result<&'a [u8], Malformed> {
            match self.next()? {
                (found, _, whole) if found == tag => Ok(whole),
                _ => Err(Malformed),
            }
        }

        /// Skips the next element if it carries `tag` (an optional field absent otherwise).
        pub(super) fn skip(&mut self, tag: u8) -> Result<(), Malformed> {
            if self.rest.first() == Some(&tag) {
                self.next()?;
            }
            Ok(())
        }
    }

    /// What muster reads of a certificate's to-be-signed part.
    pub(super) struct Tbs<'a> {
        /// The issuer name, whole.
        pub(super) issuer: &'a [u8],
        /// The subject name, whole, and its content (the RDNs).
        pub(super) subject: &'a [u8],
        pub(super) subject_content: &'a [u8],
        /// The subject public key's bits.
        pub(super) public_key: &'a [u8],
        /// The subject key identifier, if the extension is there.
        pub(super) key_id: Option<&'a [u8]>,
    }

    impl<'a> Tbs<'a> {
        pub(super) fn parse(certificate: &'a [u8]) -> Result<Tbs<'a>, Malformed> {
            let mut outer = Reader::new(Reader::new(certificate).expect(SEQUENCE)?);
            let mut tbs = Reader::new(outer.expect(SEQUENCE)?);
            tbs.skip(CONTEXT_0)?;
            tbs.expect(INTEGER)?;
            tbs.expect(SEQUENCE)?;
            let issuer = tbs.expect_whole(SEQUENCE)?;
            tbs.expect(SEQUENCE)?;
            let subject = tbs.expect_whole(SEQUENCE)?;
            let subject_content = Reader::new(subject).expect(SEQUENCE)?;
            let mut spki = Reader::new(tbs.expect(SEQUENCE)?);
            spki.expect(SEQUENCE)?;
            let public_key = match spki.expect(BIT_STRING)?.split_first() {
                Some((0, bits)) => bits,
                _ => return Err(Malformed),
            };
            // Issuer and subject unique IDs, implicitly tagged [1] and [2], then [3] extensions.
            tbs.skip(0x81)?;
            tbs.skip(0x82)?;
            let key_id = match tbs.rest.first() {
                Some(&CONTEXT_3) => subject_key_id(Reader::new(tbs.expect(CONTEXT_3)?).expect(SEQUENCE)?)?,
                _ => None,
            };
            Ok(Tbs { issuer, subject, subject_content, public_key, key_id })
        }
    }

    /// The subject key ID among `extensions` (the content of their SEQUENCE).
    fn subject_key_id(extensions: &[u8]) -> Result<Option<&[u8]>, Malformed> {
        const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
        let mut extensions = Reader::new(extensions);
        while !extensions.is_empty() {
            let mut extension = Reader::new(extensions.expect(SEQUENCE)?);
            let oid = extension.expect(OID)?;
            extension.skip(0x01)?;
            let value = extension.expect(OCTET_STRING)?;
            if oid == SUBJECT_KEY_ID {
                return Reader::new(value).expect(OCTET_STRING).map(Some);
            }
        }
        Ok(None)
    }

    /// An element of `tag` holding `content`.
    pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let length = content.len();
        let mut out = vec![tag];
        if length < 0x80 {
            out.push(length as u8);
        } else {
            let bytes = length.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    /// An OBJECT IDENTIFIER's arcs from its content.
    pub(super) fn oid_arcs(content: &[u8]) -> Result<Vec<u64>, Malformed> {
        let mut values = Vec::new();
        let mut value: u64 = 0;
        for &byte in content {
            value = value.checked_mul(128).ok_or(Malformed)? | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                values.push(value);
                value = 0;
            }
        }
        let (&first, rest) = values.split_first().ok_or(Malformed)?;
        if content.last().is_some_and(|&b| b & 0x80 != 0) {
            return Err(Malformed);
        }
        let (arc0, arc1) = match first {
            0..=39 => (0, first),
            40..=79 => (1, first - 40),
            _ => (2, first - 80),
        };
        Ok([arc0, arc1].into_iter().chain(rest.iter().copied()).collect())
    }
}

/// `muster tls`'s examples, after its help (Consul's `tls` help).
pub(crate) const TLS_EXAMPLES: &str = "\
Here are some simple examples, and more detailed examples are available
in the subcommands or the documentation.

Create a CA

  $ muster tls ca create

Create a server certificate

  $ muster tls cert create -server

Create a client certificate

  $ muster tls cert create -client";

/// `muster tls ca`'s examples (Consul's `tls ca` help).
const CA_EXAMPLES: &str = "\
Create a CA

  $ muster tls ca create
  ==> Saved consul-agent-ca.pem
  ==> Saved consul-agent-ca-key.pem";

/// `muster tls cert`'s examples (Consul's `tls cert` help).
const CERT_EXAMPLES: &str = "\
Create a certificate

  $ muster tls cert create -server
  ==> Saved dc1-server-consul-0.pem
  ==> Saved dc1-server-consul-0-key.pem

Create a certificate with your own CA:

  $ muster tls cert create -server -ca my-ca.pem -key my-ca-key.pem";

/// What `tls cert create -server` prints first, word for word Consul's.
const SERVER_WARNING: &str = "\
==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.";

/// Consul's `-domain` default.
const DOMAIN_DEFAULT: &str = "consul";
/// Consul's `-dc` default.
const DC_DEFAULT: &str = "dc1";
/// Consul's `-ca` and `-key` defaults; the placeholder is replaced (once) by `-domain`.
const CA_FILE_DEFAULT: &str = "#DOMAIN#-agent-ca.pem";
const CA_KEY_FILE_DEFAULT: &str = "#DOMAIN#-agent-ca-key.pem";
const DOMAIN_PLACEHOLDER: &str = "#DOMAIN#";
const LOCALHOST: &str = "localhost";
/// A CA's default validity, about 5 years (Consul's).
const CA_DAYS_DEFAULT: i64 = 1825;
/// What `tls ca create -days 0` gives: `tlsutil.GenerateCA` reads 0 as unset.
const CA_DAYS_ZERO: i64 = 365;
/// A certificate's default validity (Consul's).
const CERT_DAYS_DEFAULT: i64 = 365;
const SECONDS_PER_DAY: i64 = 24 * 60 * 60;
/// GeneralizedTime's first and last seconds, 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z, as
/// seconds since the Unix epoch: Go's `asn1` writes no time outside them.
const GENERALIZED_TIME_MIN: i64 = -62_167_219_200;
const GENERALIZED_TIME_MAX: i64 = 253_402_300_799;
/// The highest `<n>` in a certificate's file names Consul tries before giving up.
const FILE_INDEX_MAX: u32 = 10_000;
/// Certificates are public: readable by all, less the umask (Consul's 0666).
const CERT_MODE: u32 = 0o666;
/// Keys are the owner's alone (Consul's 0600).
const KEY_MODE: u32 = 0o600;
/// Go's `pem.Encode` line length.
const PEM_LINE_CHARS: usize = 64;

const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_SUBJECT_KEY_ID: &[u64] = &[2, 5, 29, 14];
const OID_STREET_ADDRESS: &[u64] = &[2, 5, 4, 9];
const OID_POSTAL_CODE: &[u64] = &[2, 5, 4, 17];
/// id-ecPublicKey and rsaEncryption, whole, and a NULL: for wrapping keys as PKCS#8.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const DER_NULL: &[u8] = &[0x05, 0x00];
/// A CA's key usage as Go writes it: digitalSignature, keyCertSign, cRLSign in the shortest
/// BIT STRING (7 bits used).
const KEY_USAGE_CA: &[u8] = &[der::BIT_STRING, 0x02, 0x01, 0x86];
/// A certificate's key usage as Go writes it: digitalSignature, keyEncipherment (3 bits used).
const KEY_USAGE_LEAF: &[u8] = &[der::BIT_STRING, 0x02, 0x05, 0xa0];
/// Basic constraints `cA TRUE`, no path length, and Go's `cA FALSE`: the default, left out.
const BASIC_CONSTRAINTS_CA: &[u8] = &[der::SEQUENCE, 0x03, 0x01, 0x01, 0xff];
const BASIC_CONSTRAINTS_LEAF: &[u8] = &[der::SEQUENCE, 0x00];

#[cfg(test)]
mod tests;
