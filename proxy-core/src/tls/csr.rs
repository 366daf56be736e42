//! A new key pair for an identity, made on this node (ECDSA P-256, as Istio's workload
//! keys), and the PKCS#10 request a CA signs: its only name is the SPIFFE URI SAN.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};

use crate::identity::SpiffeId;

/// A key pair waiting for its certificate, and the request sent for it.
pub(crate) struct KeyRequest {
    pub key: KeyPair,
    pub csr_pem: String,
}

pub(crate) fn key_request(id: &SpiffeId) -> Result<KeyRequest, String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| format!("key generation: {e}"))?;
    let uri = rcgen::string::Ia5String::try_from(id.uri()).map_err(|e| format!("SPIFFE ID as a SAN: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params.serialize_request(&key).map_err(|e| format!("signing request: {e}"))?;
    let csr_pem = csr.pem().map_err(|e| format!("signing request PEM: {e}"))?;
    Ok(KeyRequest { key, csr_pem })
}
