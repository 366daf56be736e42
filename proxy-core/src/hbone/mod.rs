//! HBONE: HTTP/2 CONNECT tunnels over mutual TLS 1.3 between node proxies, as Istio
//! ambient's ztunnel speaks it (port 15008, SPIFFE SANs, CONNECT to the pod's
//! `ip:port`).
//!
//! * [`HbonePool`] — the outbound side: pooled TLS connections per (source, caller
//!   identity, peer node, expected identity), many [`TunnelStream`]s on each;
//! * [`Inbound`] — the server on the HBONE port: terminates TLS, admits each stream
//!   through the [`InboundGate`] (which also admits same-node calls, without TLS) and
//!   pipes it to the pod;
//! * the [`InboundGate`] enforces the pods' AuthorizationPolicies (see
//!   [`crate::authz`]); [`InboundPolicy`] is an extra hook after them ([`AllowAll`]:
//!   nothing more).

mod accept;
mod chunks;
mod classify;
mod coalesce;
mod dial;
mod error;
mod gate;
mod inbound;
mod keepalive;
mod metrics;
mod options;
mod policy;
mod pool;
mod request;
mod stream;
mod transport;

pub use error::TunnelError;
pub use gate::{Denial, InboundGate, StreamClaim};
pub use inbound::{Inbound, InboundOptions};
pub use metrics::{stream_labels, HboneMetrics, RefusalLabels, StreamLabels};
pub use options::HboneOptions;
pub use policy::{AllowAll, InboundPolicy, InboundRequest, Tunnel};
pub use pool::{HbonePool, PoolOptions, TunnelKey};
pub use request::{connect_request, destination_of, service_of, CallContext, BAGGAGE, FORWARDED, SERVICE, TRACEPARENT};
pub use stream::TunnelStream;

/// The HBONE port (Istio ambient's).
pub const DEFAULT_PORT: u16 = 15008;
