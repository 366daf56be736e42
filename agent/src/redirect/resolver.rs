//! The proxy's view of `AMBIT_CONNS`: accepted connection -> [`Origin`].
//!
//! A record is needed exactly once, when the proxy accepts the connection, so it is
//! deleted right after a successful lookup: `AMBIT_CONNS` then holds only connections
//! the proxy has not accepted yet. The sockops close path tolerates the missing entry.

use std::net::SocketAddr;
use std::sync::Mutex;

use ambit_ebpf_common::{ConnKey, Redirect};
use ambit_proxy_core::identity::{CgroupId, Origin, OriginError, OriginResolver};
use aya::maps::{HashMap, MapData, MapError};

use super::addr;

/// Resolves origins by looking up the connection's address pair in `AMBIT_CONNS`.
pub struct ConnsResolver {
    /// Lookups need only `&self`; the delete needs `&mut` (one short lock per connection).
    conns: Mutex<HashMap<MapData, ConnKey, Redirect>>,
}

impl ConnsResolver {
    pub(super) fn new(conns: HashMap<MapData, ConnKey, Redirect>) -> Self {
        Self { conns: Mutex::new(conns) }
    }
}

impl OriginResolver for ConnsResolver {
    fn resolve(&self, peer: SocketAddr, local: SocketAddr) -> Result<Origin, OriginError> {
        let key = addr::conn_key(peer, local);
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        match conns.get(&key, 0) {
            Ok(r) => {
                // Looked up once: the record has served its purpose. A failed delete
                // (the connection closed meanwhile) leaves it to the close path.
                let _ = conns.remove(&key);
                Ok(Origin {
                    destination: addr::from_map_addr(r.orig_addr, r.orig_port),
                    pod_cgroup: CgroupId(r.pod_cgroup),
                })
            }
            Err(MapError::KeyNotFound) => Err(OriginError::Unknown { peer, local }),
            Err(e) => Err(OriginError::Lookup(e.to_string())),
        }
    }
}
