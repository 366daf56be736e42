//! `ambit_http_retries_total` and `ambit_http_retries_refused_total`: the retries made
//! (GEP-1731), and the retryable attempts that were not retried, per route rule and
//! backend. Retries divided by `ambit_requests_total` are the extra attempts per request.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;

/// Labels of both retry families. Their sets are bounded by the configuration (routes,
/// rules, backends) times the few reasons.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RetryLabels {
    /// The route, as in `ambit_requests_total`.
    pub route: Arc<str>,
    /// The rule's name, or its index when unnamed.
    pub rule: Arc<str>,
    /// The backend Service port, `namespace/name:port`.
    pub backend: Arc<str>,
    /// Retries: `status`, `connection` or `timeout`. Refused: `exhausted`,
    /// `body_too_large`, `deadline` or `budget`.
    pub reason: &'static str,
}
