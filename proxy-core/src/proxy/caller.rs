//! Who an upstream connection is made for: the caller's socket source, its workload
//! identity (when the proxy knows the caller and a trust domain), and what a tunnel's
//! CONNECT says about the call.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use super::egress::Source;
use crate::hbone::CallContext;
use crate::identity::SpiffeId;

#[derive(Clone, Debug)]
pub struct Caller {
    key: Arc<CallerKey>,
    /// What the CONNECT request of a tunnel carries (not part of the pool key).
    pub call: Arc<CallContext>,
}

/// The part of a [`Caller`] that decides which pooled connections it may share.
///
/// Built once per downstream connection. Each request's pool key holds it by this
/// connection's own reference count: cloning the identity instead would touch, per
/// request, counts shared with the configuration and the other workers (the trust
/// domain's is shared by every caller); and it hashes as one word computed here.
#[derive(Debug)]
pub struct CallerKey {
    source: Source,
    /// The caller's SPIFFE ID (None: an unknown caller; it cannot reach mesh pods).
    identity: Option<SpiffeId>,
    hash: u64,
}

impl CallerKey {
    fn new(source: Source, identity: Option<SpiffeId>) -> Self {
        let hash = foldhash::fast::FixedState::default().hash_one((&source, &identity));
        Self { source, identity, hash }
    }
}

impl PartialEq for CallerKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.source == other.source && self.identity == other.identity
    }
}

impl Eq for CallerKey {}

impl Hash for CallerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Caller {
    pub fn new(source: Source, identity: Option<SpiffeId>, call: Arc<CallContext>) -> Self {
        Self { key: Arc::new(CallerKey::new(source, identity)), call }
    }

    /// The node itself, without an identity (plaintext only).
    pub fn node() -> Self {
        Self::new(Source::Node, None, Arc::default())
    }

    /// Where the caller's upstream sockets are made.
    pub fn source(&self) -> Source {
        self.key.source
    }

    /// The caller's SPIFFE ID (None: an unknown caller; it cannot reach mesh pods).
    pub fn identity(&self) -> Option<&SpiffeId> {
        self.key.identity.as_ref()
    }

    /// The pool key's caller part: this connection's key, by reference count.
    pub fn key(&self) -> Arc<CallerKey> {
        self.key.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::CgroupId;

    fn id(sa: &str) -> Option<SpiffeId> {
        Some(format!("spiffe://cluster.local/ns/shop/sa/{sa}").parse().unwrap())
    }

    #[test]
    fn keys_built_apart_for_the_same_caller_are_equal_and_hash_alike() {
        let a = Caller::new(Source::Pod(CgroupId(7)), id("web"), Arc::default());
        let b = Caller::new(Source::Pod(CgroupId(7)), id("web"), Arc::default());
        assert!(!Arc::ptr_eq(&a.key(), &b.key()), "one key per connection");
        assert_eq!(a.key(), b.key());
        let hash = |k: &Arc<CallerKey>| foldhash::fast::FixedState::with_seed(1).hash_one(k);
        assert_eq!(hash(&a.key()), hash(&b.key()));
    }

    #[test]
    fn another_source_or_identity_is_another_key() {
        let base = Caller::new(Source::Pod(CgroupId(7)), id("web"), Arc::default()).key();
        for other in [
            Caller::new(Source::Pod(CgroupId(8)), id("web"), Arc::default()),
            Caller::new(Source::Pod(CgroupId(7)), id("cart"), Arc::default()),
            Caller::new(Source::Pod(CgroupId(7)), None, Arc::default()),
            Caller::new(Source::Node, id("web"), Arc::default()),
        ] {
            assert_ne!(base, other.key(), "{other:?}");
        }
    }
}
