//! The data path's Prometheus metrics (OpenMetrics text, served by the agent's admin
//! API). Every family, its labels and the bound on its label sets are listed in the
//! README's "Metrics" section.
//!
//! The hot path never takes a lock: families are [`LockFreeFamily`]s (an atomic
//! snapshot load and a hash probe per update; a mutex only the first time a label set
//! is seen), counters are atomics, and histograms are [`LatencyHistogram`]s (atomics per
//! bucket).

mod authz;
mod certificates;
mod family;
mod histogram;
mod request_handles;
mod retries;
mod upstream;

pub use authz::{AuthzMetrics, DecisionLabels};
pub use certificates::{CertificateMetrics, RenewalResult};
pub use family::{LabelKey, LockFreeFamily};
pub use histogram::{LatencyHistogram, LATENCY_BUCKETS};
pub use retries::RetryLabels;
pub use upstream::{UpstreamConnectLabels, UpstreamConnects};

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// A response status class, the only form in which statuses become labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
}

impl StatusClass {
    pub fn of(status: u16) -> Self {
        match status {
            0..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
        }
    }
}

/// Labels of `ambit_requests_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The caller pod's namespace ("" when unknown).
    pub caller_namespace: Arc<str>,
    /// The caller's owning workload (Deployment, StatefulSet, ...; "" when unknown).
    pub caller_workload: Arc<str>,
    /// The dialled Service port, `namespace/name:port`.
    pub service: Arc<str>,
    /// The route that matched, `namespace/name` ("" when no route applied).
    pub route: Arc<str>,
    /// The rule's name, or its index when unnamed ("" when no rule matched).
    pub rule: Arc<str>,
    /// The backend Service port, `namespace/name:port` ("" for local replies).
    pub backend: Arc<str>,
    /// `1xx`..`5xx`.
    pub status_class: &'static str,
}

/// [`RequestLabels`] borrowed from the request's connection and route table: what a
/// request's metrics are looked up with (see [`LabelKey`]). Its fields are
/// hashed in the same order as [`RequestLabels`]'s.
#[derive(Clone, Copy, Debug, PartialEq, Hash)]
pub struct RequestLabelsRef<'a> {
    pub caller_namespace: &'a str,
    pub caller_workload: &'a str,
    pub service: &'a str,
    pub route: &'a str,
    pub rule: &'a str,
    pub backend: &'a str,
    pub status_class: &'static str,
}

impl RequestLabels {
    /// The borrowed form, to record a request with.
    pub fn borrowed(&self) -> RequestLabelsRef<'_> {
        RequestLabelsRef {
            caller_namespace: &self.caller_namespace,
            caller_workload: &self.caller_workload,
            service: &self.service,
            route: &self.route,
            rule: &self.rule,
            backend: &self.backend,
            status_class: self.status_class,
        }
    }
}

impl hashbrown::Equivalent<RequestLabels> for RequestLabelsRef<'_> {
    fn equivalent(&self, key: &RequestLabels) -> bool {
        *self == key.borrowed()
    }
}

impl LabelKey<RequestLabels> for RequestLabelsRef<'_> {
    fn to_labels(&self) -> RequestLabels {
        RequestLabels {
            caller_namespace: self.caller_namespace.into(),
            caller_workload: self.caller_workload.into(),
            service: self.service.into(),
            route: self.route.into(),
            rule: self.rule.into(),
            backend: self.backend.into(),
            status_class: self.status_class,
        }
    }
}

/// Labels of `ambit_request_duration_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LatencyLabels {
    pub caller_namespace: Arc<str>,
    pub service: Arc<str>,
    pub status_class: &'static str,
}

/// [`LatencyLabels`] borrowed (hashed in the same order).
#[derive(Hash)]
struct LatencyKey<'a> {
    caller_namespace: &'a str,
    service: &'a str,
    status_class: &'static str,
}

impl hashbrown::Equivalent<LatencyLabels> for LatencyKey<'_> {
    fn equivalent(&self, key: &LatencyLabels) -> bool {
        (self.caller_namespace, self.service, self.status_class) == (&*key.caller_namespace, &*key.service, key.status_class)
    }
}

impl LabelKey<LatencyLabels> for LatencyKey<'_> {
    fn to_labels(&self) -> LatencyLabels {
        LatencyLabels { caller_namespace: self.caller_namespace.into(), service: self.service.into(), status_class: self.status_class }
    }
}

/// Labels of `ambit_backend_request_duration_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BackendLabels {
    pub service: Arc<str>,
    pub backend: Arc<str>,
}

/// [`BackendLabels`] borrowed (hashed in the same order).
#[derive(Hash)]
struct BackendKey<'a> {
    service: &'a str,
    backend: &'a str,
}

impl hashbrown::Equivalent<BackendLabels> for BackendKey<'_> {
    fn equivalent(&self, key: &BackendLabels) -> bool {
        (self.service, self.backend) == (&*key.service, &*key.backend)
    }
}

impl LabelKey<BackendLabels> for BackendKey<'_> {
    fn to_labels(&self) -> BackendLabels {
        BackendLabels { service: self.service.into(), backend: self.backend.into() }
    }
}

/// Labels of the TCP passthrough families.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TcpLabels {
    pub caller_namespace: Arc<str>,
    pub caller_workload: Arc<str>,
    pub service: Arc<str>,
}

/// Labels of `ambit_limit_rejections_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectionLabels {
    /// The cap that refused: `caller_connections`, `caller_requests`, `node_connections`, `node_requests`.
    pub limit: &'static str,
    pub caller_namespace: Arc<str>,
}

/// One finished HTTP request, as the metrics see it.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    pub labels: RequestLabelsRef<'a>,
    /// From the request head to the response head.
    pub duration_seconds: f64,
    /// From sending to the backend to its response head (None for local replies).
    pub backend_seconds: Option<f64>,
}

/// Most label sets a family with caller labels holds before new ones overflow (their
/// `caller_namespace` and `caller_workload` blanked; see [`LockFreeFamily::capped`]).
pub const MAX_LABEL_SETS: usize = 10_000;

/// Labels of `ambit_metrics_label_overflow_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OverflowLabels {
    /// The metric whose label sets overflowed, e.g. `ambit_requests_total`.
    pub family: &'static str,
}

/// The data path's metrics, registered once at start.
#[derive(Debug)]
pub struct ProxyMetrics {
    requests: LockFreeFamily<RequestLabels, Counter>,
    request_duration: LockFreeFamily<LatencyLabels, LatencyHistogram>,
    backend_duration: LockFreeFamily<BackendLabels, LatencyHistogram>,
    /// The three above, by request label set (not registered; see `request_handles`).
    handles: LockFreeFamily<RequestLabels, request_handles::RequestHandles>,
    /// Most label sets of a capped family (and of `handles`).
    label_cap: usize,
    tcp_opened: LockFreeFamily<TcpLabels, Counter>,
    tcp_closed: LockFreeFamily<TcpLabels, Counter>,
    tcp_received: LockFreeFamily<TcpLabels, Counter>,
    tcp_sent: LockFreeFamily<TcpLabels, Counter>,
    limit_rejections: LockFreeFamily<RejectionLabels, Counter>,
    label_overflow: Family<OverflowLabels, Counter>,
    upstream_connects: Family<UpstreamConnectLabels, Counter>,
    retries: LockFreeFamily<RetryLabels, Counter>,
    retries_refused: LockFreeFamily<RetryLabels, Counter>,
}

fn unknown() -> Arc<str> {
    Arc::from("")
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::with_label_cap(MAX_LABEL_SETS)
    }
}

impl ProxyMetrics {
    /// The families, those with caller labels capped at `max` label sets each.
    fn with_label_cap(max: usize) -> Self {
        let label_overflow = Family::<OverflowLabels, Counter>::default();
        let overflowed = |family: &'static str| label_overflow.get_or_create(&OverflowLabels { family }).clone();
        let tcp = |family| -> LockFreeFamily<TcpLabels, Counter> {
            LockFreeFamily::capped(
                max,
                |l| TcpLabels { caller_namespace: unknown(), caller_workload: unknown(), service: l.service.clone() },
                overflowed(family),
            )
        };
        Self {
            requests: LockFreeFamily::capped(
                max,
                |l| RequestLabels { caller_namespace: unknown(), caller_workload: unknown(), ..l.clone() },
                overflowed("ambit_requests_total"),
            ),
            request_duration: LockFreeFamily::capped(
                max,
                |l| LatencyLabels { caller_namespace: unknown(), ..l.clone() },
                overflowed("ambit_request_duration_seconds"),
            ),
            backend_duration: LockFreeFamily::default(),
            handles: LockFreeFamily::default(),
            label_cap: max,
            tcp_opened: tcp("ambit_tcp_connections_opened_total"),
            tcp_closed: tcp("ambit_tcp_connections_closed_total"),
            tcp_received: tcp("ambit_tcp_received_bytes_total"),
            tcp_sent: tcp("ambit_tcp_sent_bytes_total"),
            limit_rejections: LockFreeFamily::capped(
                max,
                |l| RejectionLabels { limit: l.limit, caller_namespace: unknown() },
                overflowed("ambit_limit_rejections_total"),
            ),
            label_overflow,
            upstream_connects: Family::default(),
            retries: LockFreeFamily::default(),
            retries_refused: LockFreeFamily::default(),
        }
    }

    /// Creates the families and registers them in `registry` (names get `ambit_`).
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        Self::register_capped(registry, MAX_LABEL_SETS)
    }

    fn register_capped(registry: &mut Registry, max: usize) -> Arc<Self> {
        let metrics = Self::with_label_cap(max);
        let r = registry.sub_registry_with_prefix("ambit");
        r.register("requests", "HTTP requests (and gRPC calls) proxied, by caller, Service, route, rule, backend and status class", metrics.requests.clone());
        r.register(
            "request_duration_seconds",
            "Time from a request's head to its response's head, by caller namespace, Service and status class",
            metrics.request_duration.clone(),
        );
        r.register(
            "backend_request_duration_seconds",
            "Time from sending a request to a backend to its response head, by Service and backend",
            metrics.backend_duration.clone(),
        );
        r.register("tcp_connections_opened", "TCP passthrough connections opened to a backend", metrics.tcp_opened.clone());
        r.register("tcp_connections_closed", "TCP passthrough connections closed", metrics.tcp_closed.clone());
        r.register("tcp_received_bytes", "Bytes received from callers on TCP passthrough connections", metrics.tcp_received.clone());
        r.register("tcp_sent_bytes", "Bytes sent to callers on TCP passthrough connections", metrics.tcp_sent.clone());
        r.register(
            "limit_rejections",
            "Connections reset and requests answered 503 because a cap was reached, by cap and caller namespace",
            metrics.limit_rejections.clone(),
        );
        r.register(
            "metrics_label_overflow",
            "Updates recorded with blank caller labels because their metric already held its maximum of label sets",
            metrics.label_overflow.clone(),
        );
        r.register(
            "upstream_connects",
            "Upstream connections opened for HTTP requests (pool misses), by kind: http1, http2, upgrade",
            metrics.upstream_connects.clone(),
        );
        r.register(
            "http_retries",
            "HTTP requests sent again by a route rule's retry policy, by route, rule, backend and reason: status, connection, timeout",
            metrics.retries.clone(),
        );
        r.register(
            "http_retries_refused",
            "Retryable attempts not retried, by route, rule, backend and reason: exhausted, body_too_large, deadline, budget",
            metrics.retries_refused.clone(),
        );
        Arc::new(metrics)
    }

    /// Records one retry.
    pub fn retried(&self, labels: &RetryLabels) {
        self.retries.with(labels, |c| c.inc());
    }

    /// Records a retryable attempt that was not retried.
    pub fn retry_refused(&self, labels: &RetryLabels) {
        self.retries_refused.with(labels, |c| c.inc());
    }

    /// Records one finished HTTP request.
    pub fn request(&self, record: RequestRecord<'_>) {
        let RequestRecord { labels, duration_seconds, backend_seconds } = record;
        if self.record_by_handles(&labels, duration_seconds, backend_seconds) {
            return;
        }
        if let Some(seconds) = backend_seconds {
            let backend = BackendKey { service: labels.service, backend: labels.backend };
            self.backend_duration.with_key(&backend, |h| h.observe(seconds));
        }
        let latency = LatencyKey {
            caller_namespace: labels.caller_namespace,
            service: labels.service,
            status_class: labels.status_class,
        };
        self.request_duration.with_key(&latency, |h| h.observe(duration_seconds));
        self.requests.with_key(&labels, |c| c.inc());
        self.keep_handles(&labels);
    }

    /// The counters of `ambit_upstream_connects_total`.
    pub fn upstream_connects(&self) -> UpstreamConnects {
        UpstreamConnects::of(&self.upstream_connects)
    }

    /// Records one connection or request refused by the cap `limit`.
    pub fn limit_rejected(&self, limit: &'static str, caller_namespace: &Arc<str>) {
        let labels = RejectionLabels { limit, caller_namespace: caller_namespace.clone() };
        self.limit_rejections.with(&labels, |c| c.inc());
    }

    /// Records a TCP passthrough connection opened to a backend.
    pub fn tcp_opened(&self, labels: &TcpLabels) {
        self.tcp_opened.with(labels, |c| c.inc());
    }

    /// Records a TCP passthrough connection closed after `received` bytes from the caller
    /// and `sent` bytes to it.
    pub fn tcp_closed(&self, labels: &TcpLabels, received: u64, sent: u64) {
        self.tcp_received.with(labels, |c| c.inc_by(received));
        self.tcp_sent.with(labels, |c| c.inc_by(sent));
        self.tcp_closed.with(labels, |c| c.inc());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn labels(status: u16) -> RequestLabels {
        RequestLabels {
            caller_namespace: "a".into(),
            caller_workload: "web".into(),
            service: "shop/catalog:80".into(),
            route: "shop/catalog".into(),
            rule: "v2".into(),
            backend: "shop/catalog-v2:80".into(),
            status_class: StatusClass::of(status).label(),
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::of(200).label(), "2xx");
        assert_eq!(StatusClass::of(302).label(), "3xx");
        assert_eq!(StatusClass::of(404).label(), "4xx");
        assert_eq!(StatusClass::of(503).label(), "5xx");
        assert_eq!(StatusClass::of(101).label(), "1xx");
    }

    #[test]
    fn encodes_counts_per_label_set() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        for status in [200, 200, 503] {
            metrics.request(RequestRecord { labels: labels(status).borrowed(), duration_seconds: 0.002, backend_seconds: Some(0.001) });
        }
        let tcp = TcpLabels { caller_namespace: "a".into(), caller_workload: "web".into(), service: "shop/db:5432".into() };
        metrics.tcp_opened(&tcp);
        metrics.tcp_closed(&tcp, 10, 20);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"ambit_requests_total{caller_namespace="a",caller_workload="web",service="shop/catalog:80",route="shop/catalog",rule="v2",backend="shop/catalog-v2:80",status_class="2xx"} 2"#), "{text}");
        assert!(text.contains(r#"status_class="5xx"} 1"#), "{text}");
        assert!(text.contains(r#"ambit_request_duration_seconds_count{caller_namespace="a",service="shop/catalog:80",status_class="2xx"} 2"#), "{text}");
        assert!(text.contains(r#"ambit_backend_request_duration_seconds_bucket{le="0.001",service="shop/catalog:80",backend="shop/catalog-v2:80"} 3"#) || text.contains(r#"ambit_backend_request_duration_seconds_count{service="shop/catalog:80",backend="shop/catalog-v2:80"} 3"#), "{text}");
        assert!(text.contains(r#"ambit_tcp_received_bytes_total{caller_namespace="a",caller_workload="web",service="shop/db:5432"} 10"#), "{text}");
        assert!(text.contains(r#"ambit_tcp_sent_bytes_total{caller_namespace="a",caller_workload="web",service="shop/db:5432"} 20"#), "{text}");
        assert!(text.contains(r#"ambit_tcp_connections_closed_total{caller_namespace="a",caller_workload="web",service="shop/db:5432"} 1"#), "{text}");
    }

    #[test]
    fn caller_labels_of_churning_pods_stay_bounded() {
        let mut registry = Registry::default();
        const CAP: usize = 50;
        let metrics = ProxyMetrics::register_capped(&mut registry, CAP);
        let n = CAP + 500;
        for pod in 0..n {
            let mut l = labels(200);
            l.caller_workload = format!("bare-pod-{pod}").into();
            metrics.request(RequestRecord { labels: l.borrowed(), duration_seconds: 0.0, backend_seconds: None });
            let tcp = TcpLabels { caller_namespace: format!("ns-{pod}").into(), caller_workload: "w".into(), service: "shop/db:5432".into() };
            metrics.tcp_opened(&tcp);
        }
        assert_eq!(metrics.requests.len(), CAP + 1);
        assert_eq!(metrics.tcp_opened.len(), CAP + 1);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"ambit_metrics_label_overflow_total{family="ambit_requests_total"} 500"#), "overflow count missing");
        assert!(text.contains(r#"ambit_requests_total{caller_namespace="",caller_workload="",service="shop/catalog:80",route="shop/catalog",rule="v2",backend="shop/catalog-v2:80",status_class="2xx"} 500"#));
        assert!(text.contains(r#"ambit_tcp_connections_opened_total{caller_namespace="",caller_workload="",service="shop/db:5432"} 500"#));
        // The latency family's caller label is the namespace, which did not churn here.
        assert_eq!(metrics.request_duration.len(), 1);
    }

    #[test]
    fn kept_handles_count_as_the_families_do_and_gain_the_backend_when_one_is_reached() {
        let metrics = ProxyMetrics::default();
        let record = |backend_seconds| {
            metrics.request(RequestRecord { labels: labels(200).borrowed(), duration_seconds: 0.002, backend_seconds })
        };
        record(None); // a local reply first: no backend histogram yet
        assert_eq!(metrics.handles.len(), 1, "handles kept after the first request");
        assert_eq!(metrics.backend_duration.len(), 0);
        for _ in 0..3 {
            record(Some(0.001));
        }
        record(None);
        assert_eq!(metrics.requests.with(&labels(200), |c| c.get()), 5);
        let latency = LatencyLabels { caller_namespace: "a".into(), service: "shop/catalog:80".into(), status_class: "2xx" };
        assert_eq!(metrics.request_duration.with(&latency, |h| h.count()), 5);
        let backend = BackendLabels { service: "shop/catalog:80".into(), backend: "shop/catalog-v2:80".into() };
        assert_eq!(metrics.backend_duration.with(&backend, |h| h.count()), 3);
        assert!(metrics.handles.find_key(&labels(200).borrowed(), |h| h.has_backend()).unwrap());
    }

    #[test]
    fn an_overflowed_label_set_counts_as_overflowed_on_every_update() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register_capped(&mut registry, 1);
        metrics.request(RequestRecord { labels: labels(200).borrowed(), duration_seconds: 0.0, backend_seconds: None });
        let mut other = labels(200);
        other.caller_workload = "bare-pod".into();
        for _ in 0..3 {
            metrics.request(RequestRecord { labels: other.borrowed(), duration_seconds: 0.0, backend_seconds: None });
        }
        assert_eq!(metrics.handles.len(), 1, "only the label set with metrics of its own is kept");
        // The requests of a kept label set still count, the handles being full.
        metrics.request(RequestRecord { labels: labels(200).borrowed(), duration_seconds: 0.0, backend_seconds: Some(0.001) });
        assert_eq!(metrics.requests.with(&labels(200), |c| c.get()), 2);
        assert!(metrics.handles.find_key(&labels(200).borrowed(), |h| h.has_backend()).unwrap(), "handles replaced when full");
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"ambit_metrics_label_overflow_total{family="ambit_requests_total"} 3"#), "{text}");
    }

    #[test]
    fn concurrent_first_use_counts_everything_once_per_set() {
        let metrics = Arc::new(ProxyMetrics::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u16 {
                        let status = if i % 2 == 0 { 200 } else { 404 };
                        metrics.request(RequestRecord { labels: labels(status).borrowed(), duration_seconds: 0.0, backend_seconds: None });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(metrics.requests.len(), 2);
        assert_eq!(metrics.requests.with(&labels(200), |c| c.get()), 2000);
        assert_eq!(metrics.requests.with(&labels(404), |c| c.get()), 2000);
    }
}
