//! The trust bundle: the roots that sign workload certificates, and the one trust
//! domain whose identities they vouch for.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::identity::TrustDomain;

#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Arc<RootCertStore>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the trust bundle holds no certificate")]
    Empty,
    #[error("the trust bundle is not valid PEM: {0}")]
    Pem(String),
    #[error("a root of the trust bundle is not a usable CA certificate: {0}")]
    Root(String),
}

impl TrustBundle {
    pub fn new(trust_domain: TrustDomain, roots: Vec<CertificateDer<'static>>) -> Result<Self, BundleError> {
        if roots.is_empty() {
            return Err(BundleError::Empty);
        }
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root).map_err(|e| BundleError::Root(e.to_string()))?;
        }
        Ok(Self { trust_domain, roots: Arc::new(store) })
    }

    /// A bundle from the PEM certificates in `pem` (e.g. a CA directory's `ca.pem`).
    pub fn from_pem(trust_domain: TrustDomain, pem: &str) -> Result<Self, BundleError> {
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BundleError::Pem(e.to_string()))?;
        Self::new(trust_domain, roots)
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }
}
