//! Mutual TLS between node proxies: the contract between the certificates a node holds
//! (one per workload identity on it) and the HBONE tunnels that use them.
//!
//! * The client side presents the *caller's* identity and verifies the server's chain
//!   against the trust bundle; after the handshake the tunnel checks that the server's
//!   SPIFFE ID is the one expected for the destination pod (secure naming).
//! * The server side presents the certificate of the identity the client names in SNI
//!   ([`server_name`]), requires a client certificate and verifies its chain.

mod bundle;
mod classify;
mod clock;
mod context;
mod csr;
mod held;
mod lifetime;
mod peer;
mod refusal;
mod server_name;
mod source;
mod store;
mod verifier;

pub use peer::{peer_identity, peer_serial, spiffe_id_of};
pub use refusal::Refusal;
pub use server_name::{identity_from_server_name, server_name, SERVER_NAME_SUFFIX};
pub use source::{CertificateSource, IssuedChain, SignFuture, SourceError};

pub use bundle::{BundleError, TrustBundle};
pub use clock::{Clock, SystemClock, TokioClock};
pub use context::HBONE_ALPN;
pub use lifetime::{CertLifetime, LifetimeTooShort};
pub use store::{Backoff, CertState, CertStore, CertStoreOptions, CertificateStatus, Readiness, StoreStatus, TrustBundleChange};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::identity::SpiffeId;

/// No certificate is held (yet, or any more) for an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no valid certificate is held for {0}")]
pub struct NoCertificate(pub SpiffeId);

/// The TLS configurations of one node: implemented by the agent's certificate store,
/// whose configurations follow certificate rotation (a new handshake after a renewal
/// presents the new certificate; established connections are not disturbed).
pub trait MeshTls: Send + Sync + 'static {
    /// A client configuration that presents `source`'s certificate (TLS 1.3 only) and
    /// verifies the server's chain and trust domain against the trust bundle.
    fn client_config(&self, source: &SpiffeId) -> Result<Arc<rustls::ClientConfig>, NoCertificate>;

    /// Resolves once `source`'s certificate is held or the attempt to obtain it has
    /// failed; at once when no certificate is being obtained for `source`. A caller that
    /// found no certificate waits on this (bounded by its own timeout) instead of failing
    /// a connection made while the certificate is still on its way: a pod's first
    /// connections, and every connection during an agent's first seconds.
    fn obtained(&self, _source: &SpiffeId) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(std::future::ready(()))
    }

    /// [`MeshTls::obtained`] for the identity a client's SNI names ([`server_name`]):
    /// the inbound server waits on this (within its handshake timeout) before it
    /// answers a ClientHello, so that a call reaching a pod whose certificate is still
    /// on its way is served rather than refused. At once for a name that names no
    /// identity of this node.
    fn server_certificate_obtained(&self, _server_name: &str) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(std::future::ready(()))
    }

    /// The server configuration (TLS 1.3 only): it presents the certificate of the
    /// identity named by the client's SNI, and requires and verifies a client
    /// certificate against the trust bundle.
    fn server_config(&self) -> Arc<rustls::ServerConfig>;
}
