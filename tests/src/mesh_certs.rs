//! Test-made workload certificates (rcgen) for the mesh's fault tests: signed by the
//! bed's CA key (`ca-key.pem` of a [`MeshCa`] directory, a test-only use of it) or by a
//! foreign CA made here, with a chosen SPIFFE URI and validity. Written as PEM files
//! for `ambit-tls-probe`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::mesh_ca::MeshCa;

/// When a test certificate is valid.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From a minute ago for this long.
    Fresh(Duration),
    /// Valid from two hours ago until an hour ago.
    Expired,
}

impl Validity {
    fn bounds(self) -> (OffsetDateTime, OffsetDateTime) {
        let now = OffsetDateTime::now_utc();
        match self {
            Validity::Fresh(lifetime) => (now - time::Duration::minutes(1), now + lifetime),
            Validity::Expired => (now - time::Duration::hours(2), now - time::Duration::hours(1)),
        }
    }
}

/// A leaf certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct TestCertificate {
    pub certificate_pem: String,
    pub key_pem: String,
    /// The leaf's serial, lower-case hex (as `/config_dump` shows serials).
    pub serial: String,
}

impl TestCertificate {
    /// Writes `<name>.pem` and `<name>-key.pem` into `dir`; returns (certificate, key).
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let certificate = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        std::fs::write(&certificate, &self.certificate_pem).with_context(|| format!("writing {}", certificate.display()))?;
        std::fs::write(&key, &self.key_pem).with_context(|| format!("writing {}", key.display()))?;
        Ok((certificate, key))
    }
}

/// A CA that signs test certificates.
pub struct TestSigner {
    issuer: Issuer<'static, KeyPair>,
}

impl TestSigner {
    /// The bed's CA, from its directory's `ca.pem` and `ca-key.pem`.
    pub fn of_mesh_ca(ca: &MeshCa) -> Result<Self> {
        let key_pem = std::fs::read_to_string(ca.dir().join("ca-key.pem")).context("reading ca-key.pem")?;
        let key = KeyPair::from_pem(&key_pem).context("parsing ca-key.pem")?;
        let issuer = Issuer::from_ca_cert_pem(&ca.certificate_pem()?, key).context("parsing ca.pem")?;
        Ok(Self { issuer })
    }

    /// A new self-signed CA (not in any agent's trust bundle) named after `trust_domain`.
    pub fn foreign(trust_domain: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, trust_domain);
        params.distinguished_name.push(DnType::CommonName, "foreign test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        // Nobody trusts this CA, so its own certificate is never made: only its name
        // and key sign leaves.
        Ok(Self { issuer: Issuer::new(params, key) })
    }

    /// A workload certificate whose only SAN is the URI `spiffe_uri`.
    pub fn issue(&self, spiffe_uri: &str, validity: Validity) -> Result<TestCertificate> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(spiffe_uri.try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        (params.not_before, params.not_after) = validity.bounds();
        let serial: [u8; 16] = rand::random();
        let serial = [&[0x01u8][..], &serial[1..]].concat();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(TestCertificate {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn issues_the_asked_identity_serial_and_validity() {
        let uri = "spiffe://other.example/ns/a/sa/b";
        let signer = TestSigner::foreign("other.example").unwrap();
        for validity in [Validity::Fresh(Duration::from_secs(60)), Validity::Expired] {
            let issued = signer.issue(uri, validity).unwrap();
            let der = CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes()).unwrap();
            let (id, serial) = crate::tls_probe::identity_and_serial(&der);
            assert_eq!((id.as_deref(), serial.as_deref()), (Some(uri), Some(issued.serial.as_str())));
            let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
            assert_eq!(parsed.validity().is_valid(), matches!(validity, Validity::Fresh(_)), "{validity:?}");
        }
    }
}
