//! A CA directory: `ca.pem` (the root, also the trust bundle), `ca-key.pem` (its key,
//! mode 0600) and `ca.json` (the trust domain and the longest workload certificate
//! lifetime the CA issues).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ambit_proxy_core::identity::TrustDomain;
use ambit_proxy_core::tls::TrustBundle;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

pub const CERT_FILE: &str = "ca.pem";
pub const KEY_FILE: &str = "ca-key.pem";
pub const META_FILE: &str = "ca.json";

/// What `ambit-agent ca init` creates.
#[derive(Debug, Clone)]
pub struct CaInit {
    pub trust_domain: TrustDomain,
    /// The root's validity (10 years by default).
    pub validity: Duration,
    /// The longest workload certificate lifetime the CA signs (90 days by default, as
    /// Istio's `MAX_WORKLOAD_CERT_TTL`).
    pub max_workload_lifetime: Duration,
}

impl CaInit {
    pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
    pub const DEFAULT_MAX_WORKLOAD_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    trust_domain: String,
    max_workload_lifetime_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaDirError {
    #[error("{0} already holds a CA ({1} exists); refusing to overwrite it")]
    Exists(PathBuf, &'static str),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: the CA key is readable by group or others; chmod 600 it")]
    KeyPermissions(PathBuf),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaDirError + '_ {
    move |source| CaDirError::Io { path: path.to_owned(), source }
}

fn invalid(path: &Path, reason: impl ToString) -> CaDirError {
    CaDirError::Invalid { path: path.to_owned(), reason: reason.to_string() }
}

/// A loaded CA: its root, key and limits.
pub struct Authority {
    pub trust_domain: TrustDomain,
    pub max_workload_lifetime: Duration,
    pub(crate) root: CertificateDer<'static>,
    pub(crate) not_after: SystemTime,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// The trust bundle agents verify peers with: this CA's root.
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::new(self.trust_domain.clone(), vec![self.root.clone()]).expect("a parsed root")
    }

    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }
}

/// Creates a new CA in `dir` (created if missing); refuses if a CA is already there.
pub fn init_ca(dir: &Path, init: &CaInit) -> Result<Authority, CaDirError> {
    for file in [CERT_FILE, KEY_FILE, META_FILE] {
        if dir.join(file).exists() {
            return Err(CaDirError::Exists(dir.to_owned(), file));
        }
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| invalid(dir, e))?;
    let root = root_params(init).self_signed(&key).map_err(|e| invalid(dir, e))?;
    write_new(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&dir.join(CERT_FILE), root.pem().as_bytes(), 0o644)?;
    let meta = Meta {
        trust_domain: init.trust_domain.to_string(),
        max_workload_lifetime_seconds: init.max_workload_lifetime.as_secs(),
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| invalid(dir, e))?;
    write_new(&dir.join(META_FILE), &json, 0o644)?;
    load_ca(dir)
}

fn root_params(init: &CaInit) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, init.trust_domain.as_str());
    params.distinguished_name.push(DnType::CommonName, "Ambit mesh CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + init.validity).into();
    params.serial_number = Some(super::sign::random_serial());
    params
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaDirError> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io(path))?;
    file.write_all(contents).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Loads the CA in `dir`.
pub fn load_ca(dir: &Path) -> Result<Authority, CaDirError> {
    let meta_path = dir.join(META_FILE);
    let meta: Meta = serde_json::from_slice(&fs::read(&meta_path).map_err(io(&meta_path))?)
        .map_err(|e| invalid(&meta_path, e))?;
    let trust_domain = TrustDomain::new(&meta.trust_domain).map_err(|e| invalid(&meta_path, e))?;
    let key_path = dir.join(KEY_FILE);
    let mode = fs::metadata(&key_path).map_err(io(&key_path))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(CaDirError::KeyPermissions(key_path));
    }
    let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let cert_path = dir.join(CERT_FILE);
    let cert_pem = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
    let max_lifetime = Duration::from_secs(meta.max_workload_lifetime_seconds);
    Authority::from_pem(trust_domain, &cert_pem, &key_pem, max_lifetime).map_err(|reason| invalid(dir, reason))
}

impl Authority {
    /// A CA from its PEM certificate and key (e.g. the Kubernetes signer's Secret).
    pub fn from_pem(
        trust_domain: TrustDomain,
        cert_pem: &str,
        key_pem: &str,
        max_workload_lifetime: Duration,
    ) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("the CA key: {e}"))?;
        let root = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| format!("the CA certificate: {e}"))?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(root.as_ref()).map_err(|e| format!("the CA certificate: {e}"))?;
        if !parsed.is_ca() {
            return Err("the CA certificate is not a CA (basic constraints)".into());
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err("the CA key does not belong to the CA certificate".into());
        }
        let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(parsed.validity().not_after.timestamp().max(0) as u64);
        let issuer = Issuer::from_ca_cert_der(&root, key).map_err(|e| format!("the CA certificate: {e}"))?;
        Ok(Self { trust_domain, max_workload_lifetime, root, not_after, issuer })
    }
}
