//! `ambit_upstream_connects_total`: the upstream connections HTTP requests opened, that
//! is the pool's misses. Divided by `ambit_requests_total`, it is the connects per
//! request (near 0 when keep-alive connections are reused).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Labels of `ambit_upstream_connects_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpstreamConnectLabels {
    /// `http1` (pooled keep-alive), `http2` (shared) or `upgrade` (dedicated, not pooled).
    pub kind: &'static str,
}

/// The counters of `ambit_upstream_connects_total`, resolved once (an atomic add per
/// connect). Unregistered (the default), they count for nobody.
#[derive(Clone, Debug, Default)]
pub struct UpstreamConnects {
    pub http1: Counter,
    pub http2: Counter,
    pub upgrade: Counter,
}

impl UpstreamConnects {
    /// The counters of `family`'s three label sets.
    pub fn of(family: &Family<UpstreamConnectLabels, Counter>) -> Self {
        let counter = |kind| family.get_or_create(&UpstreamConnectLabels { kind }).clone();
        Self { http1: counter("http1"), http2: counter("http2"), upgrade: counter("upgrade") }
    }
}
