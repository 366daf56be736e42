//! Who an upstream connection is made for: the caller's socket source, its workload
//! identity (when the proxy knows the caller and a trust domain), and what a tunnel's
//! CONNECT says about the call.

use std::sync::Arc;

use super::egress::Source;
use crate::hbone::CallContext;
use crate::identity::SpiffeId;

#[derive(Clone, Debug)]
pub struct Caller {
    pub source: Source,
    /// The caller's SPIFFE ID (None: an unknown caller; it cannot reach mesh pods).
    pub identity: Option<SpiffeId>,
    /// What the CONNECT request of a tunnel carries (not part of the pool key).
    pub call: Arc<CallContext>,
}

/// The part of a [`Caller`] that decides which pooled connections it may share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallerKey {
    pub source: Source,
    pub identity: Option<SpiffeId>,
}

impl Caller {
    /// The node itself, without an identity (plaintext only).
    pub fn node() -> Self {
        Self { source: Source::Node, identity: None, call: Arc::default() }
    }

    pub fn key(&self) -> CallerKey {
        CallerKey { source: self.source, identity: self.identity.clone() }
    }
}
