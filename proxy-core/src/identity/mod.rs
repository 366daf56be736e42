//! Who is calling, and what did they dial: recovered from the kernel's view of the
//! socket, never from anything the caller sends.

mod spiffe;

pub use spiffe::{SpiffeId, SpiffeIdError, TrustDomain};

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// A cgroup v2 id (the cgroup directory's inode number), as `bpf_get_current_cgroup_id` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct CgroupId(pub u64);

impl fmt::Display for CgroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A pod known to the proxy: the identity of a caller.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Workload {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// The owning workload's name (the Deployment, StatefulSet, DaemonSet, Job, ... the
    /// pod belongs to; a bare pod's own name). A bounded metrics label, unlike `name`.
    pub workload: Arc<str>,
    pub uid: Arc<str>,
    pub service_account: Arc<str>,
    /// The pod-level cgroup, whose id the connect hook records.
    pub cgroup: CgroupId,
}

/// What the kernel recorded for one redirected connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The Service address (cluster IP and port) the caller dialled. IPv4-mapped IPv6
    /// addresses are normalised to IPv4.
    pub destination: SocketAddr,
    /// The enrolled pod cgroup the calling socket belongs to.
    pub pod_cgroup: CgroupId,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("no redirect record for connection {peer} -> {local}")]
    Unknown { peer: SocketAddr, local: SocketAddr },
    #[error("looking up the redirect record failed: {0}")]
    Lookup(String),
}

/// Recovers the [`Origin`] of an accepted connection from its address pair.
///
/// `peer` is the client's address as `accept()` reported it and `local` the proxy's own
/// address on that connection. Implementations must be cheap (a map lookup): this runs
/// once per accepted connection on the data path.
pub trait OriginResolver: Send + Sync + 'static {
    fn resolve(&self, peer: SocketAddr, local: SocketAddr) -> Result<Origin, OriginError>;
}

/// Normalises an IPv4-mapped IPv6 socket address to plain IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}
