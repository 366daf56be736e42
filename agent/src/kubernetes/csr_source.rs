//! The agent's side of Kubernetes mode's certificates: a [`CertificateSource`] that
//! creates a CertificateSigningRequest for Ambit's signer
//! ([`SIGNER_NAME`](crate::signer::SIGNER_NAME)), follows it until it carries a
//! certificate or is denied or failed, and deletes it.
//!
//! The API server records the requester (the agent's pod-bound service-account token,
//! hence its node) in the request; the signer decides from that. The key stays on the
//! node: only the PKCS#10 request is sent.

use std::time::Duration;

use ambit_proxy_core::identity::SpiffeId;
use ambit_proxy_core::tls::{spiffe_id_of, CertificateSource, IssuedChain, SignFuture, SourceError};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::follow::follow;
use super::rbac;
use crate::signer::conditions::{self, Stage};
use crate::signer::SIGNER_NAME;

/// The key usages requested (informational for a custom signer, which sets its own).
pub const USAGES: [&str; 3] = ["digital signature", "server auth", "client auth"];

/// How requests are made.
#[derive(Clone, Debug)]
pub struct CsrOptions {
    /// How long to wait for the signer before [`SourceError::Unavailable`].
    pub timeout: Duration,
    /// Pause before re-reading a request after a failed get or watch.
    pub retry: Duration,
}

impl Default for CsrOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30), retry: Duration::from_millis(500) }
    }
}

/// Certificates from the CertificateSigningRequest API and Ambit's signer.
#[derive(Clone)]
pub struct KubernetesCsr {
    api: Api<CertificateSigningRequest>,
    options: CsrOptions,
}

impl KubernetesCsr {
    pub fn new(client: Client, options: CsrOptions) -> Self {
        Self { api: Api::all(client), options }
    }

    async fn request(&self, id: &SpiffeId, csr_pem: &str, lifetime: Duration) -> Result<IssuedChain, SourceError> {
        let name = request_name(id);
        let object = CertificateSigningRequest {
            metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
            spec: CertificateSigningRequestSpec {
                request: k8s_openapi::ByteString(csr_pem.as_bytes().to_vec()),
                signer_name: SIGNER_NAME.into(),
                expiration_seconds: Some(lifetime.as_secs().clamp(1, i32::MAX as u64) as i32),
                usages: Some(USAGES.iter().map(|u| u.to_string()).collect()),
                ..Default::default()
            },
            status: None,
        };
        self.api.create(&PostParams::default(), &object).await.map_err(|e| create_error(id, e))?;
        let outcome = tokio::time::timeout(self.options.timeout, self.outcome(&name)).await;
        if let Err(error) = self.api.delete(&name, &DeleteParams::default()).await {
            tracing::debug!(csr = name, %error, "deleting the CertificateSigningRequest (needs {})", rbac::CSR_DELETE);
        }
        match outcome {
            Err(_) => Err(SourceError::Unavailable(format!("no answer to CertificateSigningRequest {name} within {:?}", self.options.timeout))),
            Ok(Err(error)) => Err(error),
            Ok(Ok(csr)) => chain_of(&csr, id, csr_pem),
        }
    }

    /// Follows the request until the signer is done with it.
    async fn outcome(&self, name: &str) -> Result<CertificateSigningRequest, SourceError> {
        let mut follower = follow(self.api.clone(), name, self.options.retry);
        while let Some(update) = follower.updates.recv().await {
            match update {
                Ok(Some(csr)) if conditions::stage(&csr) == Stage::Done => return Ok(csr),
                Ok(Some(_)) => {}
                Ok(None) => return Err(SourceError::Unavailable(format!("CertificateSigningRequest {name} was deleted before it was signed"))),
                Err(error) => tracing::debug!(csr = name, %error, "following the CertificateSigningRequest (needs {} and {})", rbac::CSR_GET, rbac::CSR_WATCH),
            }
        }
        Err(SourceError::Unavailable(format!("stopped following CertificateSigningRequest {name}")))
    }
}

impl CertificateSource for KubernetesCsr {
    fn sign<'a>(&'a self, id: &'a SpiffeId, csr_pem: &'a str, lifetime: Duration) -> SignFuture<'a> {
        Box::pin(self.request(id, csr_pem, lifetime))
    }
}

/// `ambit-<namespace>-<account>-<random>`, within the 253 bytes of a name.
fn request_name(id: &SpiffeId) -> String {
    let suffix: u64 = rand::random();
    let mut base = format!("ambit-{}-{}", id.namespace(), id.service_account());
    base.truncate(253 - 17);
    format!("{}-{suffix:016x}", base.trim_end_matches(['-', '.']))
}

fn create_error(id: &SpiffeId, error: kube::Error) -> SourceError {
    match &error {
        kube::Error::Api(status) if (400..500).contains(&status.code) && status.code != 429 => {
            SourceError::Refused { id: id.clone(), reason: format!("creating the CertificateSigningRequest: {error} (needs {})", rbac::CSR_CREATE) }
        }
        _ => SourceError::Unavailable(format!("creating the CertificateSigningRequest: {error}")),
    }
}

/// The chain of a finished request: refused when denied or failed; checked to be for
/// `id` and for the requested key.
fn chain_of(csr: &CertificateSigningRequest, id: &SpiffeId, csr_pem: &str) -> Result<IssuedChain, SourceError> {
    for kind in ["Denied", "Failed"] {
        if let Some((reason, message)) = conditions::reason_of(csr, kind) {
            return Err(SourceError::Refused { id: id.clone(), reason: format!("{kind} ({reason}): {message}") });
        }
    }
    let pem = conditions::certificate(csr).ok_or_else(|| SourceError::Invalid("no certificate".into()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| SourceError::Invalid(format!("the certificate is not PEM: {e}")))?;
    let leaf = chain.first().ok_or_else(|| SourceError::Invalid("an empty certificate chain".into()))?;
    let issued_for = spiffe_id_of(leaf).map_err(|e| SourceError::Invalid(format!("the certificate's identity: {e}")))?;
    if &issued_for != id {
        return Err(SourceError::Invalid(format!("the certificate is for {issued_for}, not {id}")));
    }
    if !same_key(leaf, csr_pem) {
        return Err(SourceError::Invalid("the certificate is not for the requested key".into()));
    }
    Ok(IssuedChain { chain })
}

/// Whether the leaf certifies the public key of the PKCS#10 request.
fn same_key(leaf: &CertificateDer<'_>, csr_pem: &str) -> bool {
    use x509_parser::prelude::FromDer;
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()) else { return false };
    let Ok((_, request)) = x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents) else { return false };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else { return false };
    request.certification_request_info.subject_pki.raw == cert.tbs_certificate.subject_pki.raw
}
