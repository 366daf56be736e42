//! Where workload certificates come from: the agent's local CA directory (standalone
//! mode) or the Kubernetes CertificateSigningRequest API and Ambit's signer. The key
//! pair is made on the node and never leaves it: a source only ever sees a PKCS#10
//! signing request.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::identity::SpiffeId;

/// A signed certificate chain, leaf first (the leaf carries `id` as its only URI SAN).
#[derive(Debug, Clone)]
pub struct IssuedChain {
    pub chain: Vec<CertificateDer<'static>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The CA (or the API server) could not be reached or did not answer in time:
    /// worth retrying.
    #[error("the certificate authority is unavailable: {0}")]
    Unavailable(String),
    /// The CA refused to sign (e.g. the identity has no pod on this node).
    #[error("the certificate authority refused to sign for {id}: {reason}")]
    Refused { id: SpiffeId, reason: String },
    /// What came back is not a usable chain for this request.
    #[error("the certificate authority returned an unusable chain: {0}")]
    Invalid(String),
}

pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<IssuedChain, SourceError>> + Send + 'a>>;

/// Signs certificate requests for workload identities held on this node.
pub trait CertificateSource: Send + Sync + 'static {
    /// Asks for a certificate for `id` valid for `lifetime`, from a PEM-encoded PKCS#10
    /// request whose key stays on this node.
    fn sign<'a>(&'a self, id: &'a SpiffeId, csr_pem: &'a str, lifetime: Duration) -> SignFuture<'a>;
}
