//! The peer verifiers of mesh TLS: the chain must lead to the trust bundle (webpki, with
//! the usual validity and key-usage checks) AND the end-entity certificate must carry
//! exactly one SPIFFE ID of the bundle's trust domain. Which identity is right for the
//! connection (secure naming) is the tunnel's check after the handshake.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme};

use super::{spiffe_id_of, Refusal, TrustBundle};

/// A verifier's refusal that is not one of webpki's own errors, carried through rustls
/// as `CertificateError::Other` so [`Refusal::classify`] can recover it.
#[derive(Debug, thiserror::Error)]
#[error("{detail} ({refusal})")]
pub(crate) struct MeshCertificateError {
    pub refusal: Refusal,
    pub detail: String,
}

fn refuse(refusal: Refusal, detail: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(MeshCertificateError { refusal, detail }))))
}

/// The end-entity certificate carries one SPIFFE ID, of the bundle's trust domain.
pub(crate) fn check_trust_domain(end_entity: &CertificateDer<'_>, bundle: &TrustBundle) -> Result<(), Error> {
    let id = spiffe_id_of(end_entity)
        .map_err(|refusal| refuse(refusal, "the certificate carries no single SPIFFE ID".into()))?;
    if id.trust_domain() != bundle.trust_domain() {
        return Err(refuse(
            Refusal::ForeignTrustDomain,
            format!("{id} is not in trust domain {}", bundle.trust_domain()),
        ));
    }
    Ok(())
}

/// The client side's verifier of the server's certificate. The server name is not
/// matched against DNS SANs (workload certificates carry only a URI SAN).
#[derive(Debug)]
pub(crate) struct MeshServerVerifier {
    pub bundle: TrustBundle,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(&parsed, self.bundle.roots(), intermediates, now, algorithms)?;
        check_trust_domain(end_entity, &self.bundle)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The server side's verifier of client certificates: mandatory, webpki's client
/// verification against the bundle, then the trust domain.
#[derive(Debug)]
pub(crate) struct MeshClientVerifier {
    bundle: TrustBundle,
    inner: Arc<dyn ClientCertVerifier>,
}

impl MeshClientVerifier {
    pub fn new(bundle: TrustBundle, provider: Arc<CryptoProvider>) -> Result<Self, Error> {
        let inner = WebPkiClientVerifier::builder_with_provider(bundle.roots().clone(), provider)
            .build()
            .map_err(|e| Error::General(format!("client verifier: {e}")))?;
        Ok(Self { bundle, inner })
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        check_trust_domain(end_entity, &self.bundle)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
