//! Signing a workload certificate from a PKCS#10 request: shared by standalone mode's
//! local CA and the Kubernetes signer. The request is checked, not trusted: its
//! signature must verify (the requester holds the key), and its only name must be the
//! SPIFFE ID the caller has already decided the requester may have. Everything else in
//! the certificate is set here, whatever the request asked for.

use std::time::{Duration, SystemTime};

use ambit_proxy_core::identity::SpiffeId;
use ambit_proxy_core::tls::CertLifetime;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;

use super::dir::Authority;

/// How far a certificate's validity starts in the past (clock skew between nodes).
pub const NOT_BEFORE_SKEW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the signing request is malformed or asks for unsupported extensions: {0}")]
    Malformed(String),
    #[error("the signing request's signature does not verify")]
    BadSignature,
    #[error("the signing request names {requested:?}, not exactly {expected}")]
    WrongIdentity { expected: String, requested: Vec<String> },
    #[error("{0} is not in this CA's trust domain")]
    ForeignTrustDomain(String),
    #[error("a lifetime of {requested:?} is outside this CA's range ({min:?} to {max:?})")]
    Lifetime { requested: Duration, min: Duration, max: Duration },
    #[error("the CA certificate expires before the requested certificate would")]
    CaExpiring,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Issues a certificate for `expected` to the key in `csr_pem`, valid for `lifetime`.
/// Returns the chain, leaf first (the root is the trust bundle's, not repeated).
pub fn sign_csr(
    ca: &Authority,
    csr_pem: &str,
    expected: &SpiffeId,
    lifetime: Duration,
) -> Result<Vec<CertificateDer<'static>>, SignError> {
    if expected.trust_domain() != &ca.trust_domain {
        return Err(SignError::ForeignTrustDomain(expected.to_string()));
    }
    if lifetime < CertLifetime::MIN || lifetime > ca.max_workload_lifetime {
        return Err(SignError::Lifetime { requested: lifetime, min: CertLifetime::MIN, max: ca.max_workload_lifetime });
    }
    let mut request = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => SignError::BadSignature,
        other => SignError::Malformed(other.to_string()),
    })?;
    check_names(&request.params.subject_alt_names, expected)?;
    let now = SystemTime::now();
    if now + lifetime > ca.not_after {
        return Err(SignError::CaExpiring);
    }
    request.params = leaf_params(expected, now, lifetime)?;
    let leaf = request.signed_by(&ca.issuer).map_err(|e| SignError::Signing(e.to_string()))?;
    Ok(vec![leaf.der().clone()])
}

/// The request's names must be exactly one URI SAN, the expected SPIFFE ID.
fn check_names(names: &[SanType], expected: &SpiffeId) -> Result<(), SignError> {
    let uri = expected.uri();
    match names {
        [SanType::URI(requested)] if requested.as_str() == uri => Ok(()),
        _ => Err(SignError::WrongIdentity { expected: uri, requested: names.iter().map(describe).collect() }),
    }
}

fn describe(name: &SanType) -> String {
    match name {
        SanType::URI(uri) => uri.as_str().to_owned(),
        SanType::DnsName(dns) => format!("DNS:{}", dns.as_str()),
        SanType::Rfc822Name(mail) => format!("email:{}", mail.as_str()),
        SanType::IpAddress(ip) => format!("IP:{ip}"),
        other => format!("{other:?}"),
    }
}

fn leaf_params(id: &SpiffeId, now: SystemTime, lifetime: Duration) -> Result<CertificateParams, SignError> {
    let uri = rcgen::string::Ia5String::try_from(id.uri()).map_err(|e| SignError::Signing(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = (now - NOT_BEFORE_SKEW).into();
    params.not_after = (now + lifetime).into();
    Ok(params)
}

/// A random positive 128-bit serial number.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}
