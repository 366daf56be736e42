//! Signing an authorized request with the CA key, behind one trait so that the signer's
//! controller does not care how: [`CaSigner`] issues with the shared CA code
//! ([`crate::ca::sign_csr`], as standalone mode's local CA does).
//!
//! The CA directory holds `ca.pem` (the CA certificate, which is also the trust bundle)
//! and `ca-key.pem` (its private key); in a cluster both come from the Secret `ambit-ca`
//! mounted into the signer's pod only. The trust domain and the longest lifetime come
//! from the signer's flags (a `ca.json`, as `ambit-agent ca init` writes, is not read:
//! the Secret needs only the two PEM files).

use std::path::Path;
use std::time::Duration;

use ambit_proxy_core::identity::{SpiffeId, TrustDomain};

use crate::ca::Authority;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("reading the CA: {0}")]
    Ca(String),
    #[error("signing: {0}")]
    Sign(String),
}

/// Issues a workload certificate from an authorized PKCS#10 request.
pub trait Signer: Send + Sync + 'static {
    /// The leaf (PEM; then any intermediates) for `id`, valid for `lifetime`. The caller
    /// has verified the request and that it asks for exactly `id`.
    fn sign(&self, csr_pem: &str, id: &SpiffeId, lifetime: Duration) -> Result<String, SignError>;

    /// The trust bundle to publish: the CA certificate(s), PEM.
    fn trust_bundle(&self) -> &str;
}

/// The CA certificate and key from a CA directory.
pub struct CaSigner {
    ca_pem: String,
    authority: Authority,
}

/// Never shows the key.
impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner").field("trust_domain", &self.authority.trust_domain).finish_non_exhaustive()
    }
}

impl CaSigner {
    /// `ca.pem` and `ca-key.pem` of `dir`, for `trust_domain`, signing at most `max_lifetime`.
    pub fn from_dir(dir: &Path, trust_domain: TrustDomain, max_lifetime: Duration) -> Result<Self, SignError> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| SignError::Ca(format!("{}: {e}", dir.join(name).display())));
        Self::from_pem(trust_domain, &read("ca.pem")?, &read("ca-key.pem")?, max_lifetime)
    }

    pub fn from_pem(trust_domain: TrustDomain, ca_pem: &str, key_pem: &str, max_lifetime: Duration) -> Result<Self, SignError> {
        let authority = Authority::from_pem(trust_domain, ca_pem, key_pem, max_lifetime).map_err(SignError::Ca)?;
        Ok(Self { ca_pem: ca_pem.to_string(), authority })
    }
}

impl Signer for CaSigner {
    fn sign(&self, csr_pem: &str, id: &SpiffeId, lifetime: Duration) -> Result<String, SignError> {
        let lifetime = lifetime.min(self.authority.max_workload_lifetime);
        let chain = crate::ca::sign_csr(&self.authority, csr_pem, id, lifetime).map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(chain.iter().map(|der| pem_of(der)).collect())
    }

    fn trust_bundle(&self) -> &str {
        &self.ca_pem
    }
}

/// One certificate as PEM.
fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signer::request::tests::csr_pem;
    use rcgen::{CertificateParams, IsCa, KeyPair, KeyUsagePurpose};

    /// A self-signed CA (certificate PEM, key PEM).
    pub(crate) fn test_ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "ambit test CA");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn domain() -> TrustDomain {
        TrustDomain::new("cluster.local").unwrap()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn signs_a_leaf_with_only_the_spiffe_id_for_the_lifetime() {
        let (ca, key) = test_ca();
        let signer = CaSigner::from_pem(domain(), &ca, &key, DAY).unwrap();
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/catalog".parse().unwrap();
        let (request, _) = csr_pem(&[&id.uri()], &[]);
        let pem = signer.sign(&request, &id, Duration::from_secs(3600)).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = block.parse_x509().unwrap();
        let der = rustls::pki_types::CertificateDer::from(block.contents.clone());
        assert_eq!(ambit_proxy_core::tls::spiffe_id_of(&der).unwrap(), id);
        let validity = cert.validity();
        let seconds = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert_eq!(seconds, 3600 + crate::ca::sign::NOT_BEFORE_SKEW.as_secs() as i64);
        assert!(!cert.is_ca());
        assert_eq!(signer.trust_bundle(), ca);
    }

    #[test]
    fn a_longer_lifetime_is_shortened_and_a_foreign_domain_refused() {
        let (ca, key) = test_ca();
        let signer = CaSigner::from_pem(domain(), &ca, &key, Duration::from_secs(3600)).unwrap();
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/catalog".parse().unwrap();
        let (request, _) = csr_pem(&[&id.uri()], &[]);
        let pem = signer.sign(&request, &id, DAY).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = block.parse_x509().unwrap();
        let seconds = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(seconds, 3600 + crate::ca::sign::NOT_BEFORE_SKEW.as_secs() as i64);
        let foreign: SpiffeId = "spiffe://other.example/ns/shop/sa/catalog".parse().unwrap();
        let (request, _) = csr_pem(&[&foreign.uri()], &[]);
        assert!(signer.sign(&request, &foreign, Duration::from_secs(600)).unwrap_err().to_string().contains("trust domain"));
    }

    #[test]
    fn a_bad_ca_is_a_clear_error() {
        let (ca, _) = test_ca();
        let (_, other_key) = test_ca();
        assert!(CaSigner::from_pem(domain(), &ca, "not a key", DAY).unwrap_err().to_string().contains("the CA key"));
        assert!(CaSigner::from_pem(domain(), &ca, &other_key, DAY).unwrap_err().to_string().contains("does not belong"));
        assert!(CaSigner::from_pem(domain(), "nope", &other_key, DAY).unwrap_err().to_string().contains("the CA certificate"));
        assert!(CaSigner::from_dir(Path::new("/nonexistent"), domain(), DAY).unwrap_err().to_string().contains("ca.pem"));
    }
}
