//! Signing an authorized request with the CA key, behind one trait so that the signer's
//! controller does not care how: [`CaSigner`] is a small stand-in that the shared CA code
//! (`ca::sign_csr`, built separately) replaces.
//!
//! The CA directory is the agent's CA directory format: `ca.pem` (the CA certificate,
//! which is also the trust bundle) and `ca-key.pem` (its PKCS#8 private key); in a
//! cluster both come from a Secret mounted into the signer's pod only.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ambit_proxy_core::identity::SpiffeId;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use x509_parser::time::ASN1Time;

/// How far back a certificate's validity starts, for nodes whose clocks run behind.
pub const BACKDATE: Duration = Duration::from_secs(60);

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
    issuer: Issuer<'static, KeyPair>,
}

/// Never shows the key.
impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner").finish_non_exhaustive()
    }
}

impl CaSigner {
    pub fn from_dir(dir: &Path) -> Result<Self, SignError> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| SignError::Ca(format!("{}: {e}", dir.join(name).display())));
        Self::from_pem(&read("ca.pem")?, &read("ca-key.pem")?)
    }

    pub fn from_pem(ca_pem: &str, key_pem: &str) -> Result<Self, SignError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| SignError::Ca(format!("the CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(ca_pem, key).map_err(|e| SignError::Ca(format!("the CA certificate: {e}")))?;
        Ok(Self { ca_pem: ca_pem.to_string(), issuer })
    }
}

impl Signer for CaSigner {
    fn sign(&self, csr_pem: &str, id: &SpiffeId, lifetime: Duration) -> Result<String, SignError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| SignError::Sign(format!("the request: {e}")))?;
        let leaf = CertificateSigningRequestParams { params: leaf_params(id, lifetime)?, public_key: request.public_key };
        let certificate = leaf.signed_by(&self.issuer).map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(certificate.pem())
    }

    fn trust_bundle(&self) -> &str {
        &self.ca_pem
    }
}

/// A workload leaf: the SPIFFE URI as its only SAN, no subject, not a CA, for TLS client
/// and server authentication, a random serial.
fn leaf_params(id: &SpiffeId, lifetime: Duration) -> Result<CertificateParams, SignError> {
    let uri = rcgen::string::Ia5String::try_from(id.uri()).map_err(|e| SignError::Sign(e.to_string()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| SignError::Sign(e.to_string()))?;
    let at = |t: Duration| ASN1Time::from_timestamp(t.as_secs() as i64).map(|t| t.to_datetime()).map_err(|e| SignError::Sign(e.to_string()));
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = at(now.saturating_sub(BACKDATE))?;
    params.not_after = at(now + lifetime)?;
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signer::request::tests::csr_pem;

    /// A self-signed CA (certificate PEM, key PEM).
    pub(crate) fn test_ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "ambit test CA");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn signs_a_leaf_with_only_the_spiffe_id_for_the_lifetime() {
        let (ca, key) = test_ca();
        let signer = CaSigner::from_pem(&ca, &key).unwrap();
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/catalog".parse().unwrap();
        let (request, _) = csr_pem(&[&id.uri()], &[]);
        let pem = signer.sign(&request, &id, Duration::from_secs(3600)).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = block.parse_x509().unwrap();
        let der = rustls::pki_types::CertificateDer::from(block.contents.clone());
        assert_eq!(ambit_proxy_core::tls::spiffe_id_of(&der).unwrap(), id);
        let validity = cert.validity();
        let seconds = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert_eq!(seconds, 3600 + BACKDATE.as_secs() as i64);
        assert!(!cert.is_ca());
        assert_eq!(signer.trust_bundle(), ca);
    }

    #[test]
    fn a_bad_ca_is_a_clear_error() {
        let (ca, _) = test_ca();
        let (_, other_key) = test_ca();
        assert!(CaSigner::from_pem(&ca, "not a key").unwrap_err().to_string().contains("the CA key"));
        assert!(CaSigner::from_pem("nope", &other_key).unwrap_err().to_string().contains("the CA certificate"));
        assert!(CaSigner::from_dir(Path::new("/nonexistent")).unwrap_err().to_string().contains("ca.pem"));
    }
}
