//! The proxy's view of `AMBIT_CONNS`: accepted connection -> [`Origin`].

use std::net::SocketAddr;

use ambit_ebpf_common::{ConnKey, Redirect};
use ambit_proxy_core::identity::{CgroupId, Origin, OriginError, OriginResolver};
use aya::maps::{HashMap, MapData, MapError};

use super::addr;

/// Resolves origins by looking up the connection's address pair in `AMBIT_CONNS`.
pub struct ConnsResolver {
    conns: HashMap<MapData, ConnKey, Redirect>,
}

impl ConnsResolver {
    pub(super) fn new(conns: HashMap<MapData, ConnKey, Redirect>) -> Self {
        Self { conns }
    }
}

impl OriginResolver for ConnsResolver {
    fn resolve(&self, peer: SocketAddr, local: SocketAddr) -> Result<Origin, OriginError> {
        match self.conns.get(&addr::conn_key(peer, local), 0) {
            Ok(r) => Ok(Origin {
                destination: addr::from_map_addr(r.orig_addr, r.orig_port),
                pod_cgroup: CgroupId(r.pod_cgroup),
            }),
            Err(MapError::KeyNotFound) => Err(OriginError::Unknown { peer, local }),
            Err(e) => Err(OriginError::Lookup(e.to_string())),
        }
    }
}
