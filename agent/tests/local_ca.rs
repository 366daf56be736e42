//! The local CA: `ca init`, signing (and refusing forged requests), and standalone
//! mode's certificate store doing mutual TLS with certificates from it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ambit_agent::ca::{init_ca, load_ca, local_cert_store, sign_csr, Authority, CaDirError, CaInit, CertSettings, SignError};
use ambit_proxy_core::identity::{SpiffeId, TrustDomain};
use ambit_proxy_core::tls::{peer_identity, server_name, CertLifetime, MeshTls};
use rcgen::{CertificateParams, KeyPair, SanType};
use x509_parser::extensions::{GeneralName, ParsedExtension};

fn td() -> TrustDomain {
    TrustDomain::new("mesh.test").unwrap()
}

fn id(namespace: &str, account: &str) -> SpiffeId {
    SpiffeId::new(td(), namespace, account).unwrap()
}

fn init(dir: &Path) -> Authority {
    let init = CaInit {
        trust_domain: td(),
        validity: CaInit::DEFAULT_VALIDITY,
        max_workload_lifetime: Duration::from_secs(7 * 86_400),
    };
    init_ca(dir, &init).unwrap()
}

/// A PEM request signed by a new key, naming `sans`.
fn request(sans: Vec<SanType>) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn uri(text: &str) -> SanType {
    SanType::URI(rcgen::string::Ia5String::try_from(text).unwrap())
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn ca_init_writes_a_ca_directory_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_ambit-agent"))
            .args(["ca", "init", "--trust-domain", "mesh.test", "--dir"])
            .arg(&ca_dir)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let mode = std::fs::metadata(ca_dir.join("ca-key.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let root_before = std::fs::read(ca_dir.join("ca.pem")).unwrap();
    let second = run();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(ca_dir.join("ca.pem")).unwrap(), root_before, "the CA was replaced");

    let authority = load_ca(&ca_dir).unwrap();
    assert_eq!(authority.trust_domain, td());
    let (_, root) = x509_parser::parse_x509_certificate(authority.root().as_ref()).unwrap();
    assert!(root.is_ca());
    assert!(root.key_usage().unwrap().unwrap().value.key_cert_sign());
    let years = root.validity().time_to_expiration().unwrap().whole_days() / 365;
    assert!((9..=10).contains(&years), "{years} years");
    assert!(matches!(init_ca(&ca_dir, &CaInit { trust_domain: td(), validity: DAY, max_workload_lifetime: DAY }), Err(CaDirError::Exists(..))));
}

#[test]
fn a_ca_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    std::fs::set_permissions(dir.path().join("ca-key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(load_ca(dir.path()), Err(CaDirError::KeyPermissions(_))));
}

#[test]
fn signed_leaves_carry_only_the_spiffe_id_and_mesh_usages() {
    let dir = tempfile::tempdir().unwrap();
    let ca = init(dir.path());
    let identity = id("shop", "catalog");
    let csr = request(vec![uri(&identity.uri())]);
    let chain = sign_csr(&ca, &csr, &identity, Duration::from_secs(3600)).unwrap();
    let again = sign_csr(&ca, &csr, &identity, Duration::from_secs(3600)).unwrap();
    assert_eq!(chain.len(), 1);
    let (_, leaf) = x509_parser::parse_x509_certificate(chain[0].as_ref()).unwrap();
    let (_, other) = x509_parser::parse_x509_certificate(again[0].as_ref()).unwrap();
    let (_, root) = x509_parser::parse_x509_certificate(ca.root().as_ref()).unwrap();
    leaf.verify_signature(Some(root.public_key())).expect("signed by the CA");
    assert_ne!(leaf.raw_serial(), other.raw_serial(), "serials are random");
    assert!(!leaf.is_ca());
    let sans = &leaf.subject_alternative_name().unwrap().unwrap().value.general_names;
    assert_eq!(sans.len(), 1);
    assert!(matches!(sans[0], GeneralName::URI(u) if u == identity.uri()));
    let usage = leaf.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature() && !usage.key_cert_sign());
    let extended = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(extended.server_auth && extended.client_auth);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let validity = leaf.validity();
    assert!(validity.not_before.timestamp() < now, "not_before is in the past");
    assert!((validity.not_after.timestamp() - (now + 3600)).abs() <= 5);
    assert!(leaf.extensions().iter().all(|e| !matches!(e.parsed_extension(), ParsedExtension::UnsupportedExtension { .. })));
}

/// `csr_pem` with one byte of its signature flipped.
fn tampered(csr_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()).unwrap();
    let mut bytes = der.as_ref().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    pem_encode("CERTIFICATE REQUEST", &bytes)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            text.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    let lines: Vec<&str> = text.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[test]
fn forged_signing_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = init(dir.path());
    let catalog = id("shop", "catalog");
    let good = request(vec![uri(&catalog.uri())]);
    assert!(sign_csr(&ca, &tampered(&good), &catalog, DAY).is_err_and(|e| e == SignError::BadSignature));
    let wrong_identity = [
        ("another identity", vec![uri("spiffe://mesh.test/ns/shop/sa/payments")]),
        ("an extra DNS SAN", vec![uri(&catalog.uri()), SanType::DnsName("catalog.shop".try_into().unwrap())]),
        ("two URIs", vec![uri(&catalog.uri()), uri("spiffe://mesh.test/ns/shop/sa/payments")]),
        ("no SAN", vec![]),
    ];
    for (case, sans) in wrong_identity {
        let result = sign_csr(&ca, &request(sans), &catalog, DAY);
        assert!(matches!(result, Err(SignError::WrongIdentity { .. })), "{case}: {result:?}");
    }
    let foreign = SpiffeId::new(TrustDomain::new("other.test").unwrap(), "shop", "catalog").unwrap();
    let result = sign_csr(&ca, &request(vec![uri(&foreign.uri())]), &foreign, DAY);
    assert!(matches!(result, Err(SignError::ForeignTrustDomain(_))), "{result:?}");
    for lifetime in [Duration::from_secs(30), 8 * DAY] {
        assert!(matches!(sign_csr(&ca, &good, &catalog, lifetime), Err(SignError::Lifetime { .. })), "{lifetime:?}");
    }
    assert!(matches!(sign_csr(&ca, "not a request", &catalog, DAY), Err(SignError::Malformed(_))));
}

#[tokio::test]
async fn standalone_stores_from_one_ca_do_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let settings = CertSettings { trust_domain: td(), lifetime: CertLifetime::new(Duration::from_secs(600)).unwrap(), ca_dir: None };
    let node1 = local_cert_store(&settings, dir.path(), Arc::default()).unwrap();
    let node2 = local_cert_store(&settings, dir.path(), Arc::default()).unwrap();
    node1.ensure([id("shop", "frontend")]);
    node2.ensure([id("shop", "catalog")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(node1.ready().is_ready() && node2.ready().is_ready()) {
        assert!(tokio::time::Instant::now() < deadline, "no certificates: {:?} {:?}", node1.status(), node2.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (near, far) = tokio::io::duplex(16 * 1024);
    let connector = tokio_rustls::TlsConnector::from(node1.client_config(&id("shop", "frontend")).unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(node2.server_config());
    let (client, server) =
        tokio::join!(connector.connect(server_name(&id("shop", "catalog")).unwrap(), near), acceptor.accept(far));
    let (client, server) = (client.unwrap(), server.unwrap());
    assert_eq!(peer_identity(client.get_ref().1).unwrap(), id("shop", "catalog"));
    assert_eq!(peer_identity(server.get_ref().1).unwrap(), id("shop", "frontend"));

    let mismatched = CertSettings { trust_domain: TrustDomain::new("other.test").unwrap(), ..settings.clone() };
    let error = local_cert_store(&mismatched, dir.path(), Arc::default()).err().unwrap();
    assert!(error.to_string().contains("not --trust-domain"), "{error}");
    let too_long = CertSettings { lifetime: CertLifetime::new(30 * DAY).unwrap(), ..settings };
    assert!(local_cert_store(&too_long, dir.path(), Arc::default()).is_err());
}

#[test]
fn the_agent_refuses_a_certificate_lifetime_under_one_minute() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ambit-agent"))
        .args(["standalone", "--node-ip", "127.0.0.1", "--cert-lifetime", "30s", "--manifests"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cert-lifetime") && stderr.contains("minimum of one minute"), "{stderr}");
}
