//! HBONE's knobs, part of the proxy's options (defaults next to ztunnel's in README).

use std::time::Duration;

use super::{InboundOptions, PoolOptions, DEFAULT_PORT};
use crate::identity::TrustDomain;

#[derive(Clone, Debug)]
pub struct HboneOptions {
    /// The port every node's inbound HBONE server listens on (Istio: 15008).
    pub port: u16,
    /// The trust domain of this cluster's identities (callers' SPIFFE IDs are
    /// `spiffe://<trust_domain>/ns/<namespace>/sa/<service-account>`).
    pub trust_domain: TrustDomain,
    /// Inbound: from accept to a finished TLS and HTTP/2 handshake.
    pub handshake_timeout: Duration,
    /// Streams per tunnel connection, both directions (ztunnel: 100).
    pub max_streams_per_connection: u32,
    /// Outbound tunnel connections without streams are closed after this long
    /// (ztunnel: 5 min).
    pub pool_idle_timeout: Duration,
}

impl Default for HboneOptions {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            trust_domain: TrustDomain::new("cluster.local").unwrap_or_else(|_| unreachable!("a valid literal")),
            handshake_timeout: Duration::from_secs(10),
            max_streams_per_connection: 100,
            pool_idle_timeout: Duration::from_secs(300),
        }
    }
}

impl HboneOptions {
    /// The outbound pool's options (`connect_timeout` bounds dial, handshakes and a
    /// CONNECT's answer).
    pub fn pool(&self, connect_timeout: Duration) -> PoolOptions {
        PoolOptions {
            connect_timeout,
            idle_timeout: self.pool_idle_timeout,
            max_streams_per_connection: self.max_streams_per_connection,
            ..PoolOptions::default()
        }
    }

    /// The inbound server's options.
    pub fn inbound(&self, connect_timeout: Duration, stream_idle: Duration) -> InboundOptions {
        InboundOptions {
            handshake_timeout: self.handshake_timeout,
            connect_timeout,
            max_streams_per_connection: self.max_streams_per_connection,
            stream_idle,
            ..InboundOptions::default()
        }
    }
}
