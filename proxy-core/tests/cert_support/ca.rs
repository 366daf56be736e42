//! An in-memory CA issuing on a given clock (so certificates are valid in paused time).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ambit_proxy_core::identity::TrustDomain;
use ambit_proxy_core::tls::{Clock, TrustBundle};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    cert: CertificateDer<'static>,
    pub clock: Arc<dyn Clock>,
}

/// A leaf's validity relative to the CA's clock.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub from: Duration,
    pub lifetime: Duration,
    /// Start `from` in the past.
    pub backdated: bool,
}

impl Validity {
    pub fn fresh(lifetime: Duration) -> Self {
        Self { from: Duration::from_secs(5), lifetime, backdated: true }
    }

    /// Expired an hour ago.
    pub fn expired() -> Self {
        Self { from: Duration::from_secs(7200), lifetime: Duration::from_secs(3600), backdated: true }
    }
}

fn offset(time: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(time)
}

impl TestCa {
    pub fn new(name: &str, clock: Arc<dyn Clock>) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = clock.now();
        params.not_before = offset(now - Duration::from_secs(86_400));
        params.not_after = offset(now + Duration::from_secs(10 * 86_400));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().der().clone();
        Self { params, key, cert, clock }
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    pub fn bundle(&self, trust_domain: &str) -> TrustBundle {
        TrustBundle::new(TrustDomain::new(trust_domain).unwrap(), vec![self.root()]).unwrap()
    }

    fn leaf_params(&self, uris: &[&str], validity: Validity) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names =
            uris.iter().map(|uri| SanType::URI(rcgen::string::Ia5String::try_from(*uri).unwrap())).collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let now = self.clock.now();
        let start = if validity.backdated { now - validity.from } else { now + validity.from };
        params.not_before = offset(start);
        params.not_after = offset(start + validity.lifetime);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&rand_serial()));
        params
    }

    /// Signs a PEM request with the given SANs (not necessarily the request's own).
    pub fn sign_request(&self, csr_pem: &str, uris: &[&str], validity: Validity) -> Vec<CertificateDer<'static>> {
        let mut request = CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        request.params = self.leaf_params(uris, validity);
        let issuer = Issuer::from_params(&self.params, &self.key);
        vec![request.signed_by(&issuer).unwrap().der().clone()]
    }

    /// A leaf with a key of its own, for hand-built peers.
    pub fn leaf(&self, uris: &[&str], validity: Validity) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = self.leaf_params(uris, validity).signed_by(&key, &issuer).unwrap();
        (vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }
}

fn rand_serial() -> [u8; 16] {
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial
}
