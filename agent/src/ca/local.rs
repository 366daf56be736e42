//! Standalone mode's certificate source: the agent signs with a local CA directory.

use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::identity::SpiffeId;
use ambit_proxy_core::tls::{CertificateSource, IssuedChain, SignFuture, SourceError};

use super::dir::Authority;
use super::sign::sign_csr;

/// Signs this node's requests with a CA whose key the agent holds (standalone mode
/// only; in Kubernetes mode the signer Deployment is the only holder of the CA key).
#[derive(Clone)]
pub struct LocalCa(Arc<Authority>);

impl LocalCa {
    pub fn new(authority: Authority) -> Self {
        Self(Arc::new(authority))
    }

    pub fn authority(&self) -> &Authority {
        &self.0
    }
}

impl CertificateSource for LocalCa {
    fn sign<'a>(&'a self, id: &'a SpiffeId, csr_pem: &'a str, lifetime: Duration) -> SignFuture<'a> {
        Box::pin(async move {
            let chain = sign_csr(&self.0, csr_pem, id, lifetime)
                .map_err(|e| SourceError::Refused { id: id.clone(), reason: e.to_string() })?;
            Ok(IssuedChain { chain })
        })
    }
}
