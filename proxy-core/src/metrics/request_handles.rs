//! One lookup per request: a finished request updates three metrics (its counter, its
//! latency histogram and, when it reached a backend, the backend's), each in its own
//! family under its own label set. The first request of a label set looks each up (and
//! creates them); then their handles are kept together under the request's labels, so
//! the next requests of that label set find all three with one hash probe.
//!
//! Only label sets that have metrics of their own are kept (not those recorded under an
//! overflow form, which must keep counting each update as overflowed), and at most as
//! many as a capped family holds.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::family::LabelKey;
use super::histogram::LatencyHistogram;
use super::{BackendKey, LatencyKey, ProxyMetrics, RequestLabelsRef};

/// The metrics one request label set updates.
#[derive(Debug)]
pub(super) struct RequestHandles {
    count: Arc<Counter>,
    latency: Arc<LatencyHistogram>,
    /// None until a request of this label set reached a backend.
    backend: Option<Arc<LatencyHistogram>>,
}

impl RequestHandles {
    #[cfg(test)]
    pub(super) fn has_backend(&self) -> bool {
        self.backend.is_some()
    }

    /// Records a request; false when it reached a backend but the handles have no
    /// backend histogram (the caller looks that one up).
    fn record(&self, duration_seconds: f64, backend_seconds: Option<f64>) -> bool {
        self.count.inc();
        self.latency.observe(duration_seconds);
        match (backend_seconds, &self.backend) {
            (Some(seconds), Some(backend)) => backend.observe(seconds),
            (Some(_), None) => return false,
            (None, _) => {}
        }
        true
    }
}

impl ProxyMetrics {
    /// Records one request through its label set's handles: true when they were found.
    pub(super) fn record_by_handles(&self, labels: &RequestLabelsRef<'_>, duration_seconds: f64, backend_seconds: Option<f64>) -> bool {
        match self.handles.find_key(labels, |h| h.record(duration_seconds, backend_seconds)) {
            Some(true) => true,
            Some(false) => {
                // The first request of this label set to reach a backend.
                let backend = BackendKey { service: labels.service, backend: labels.backend };
                self.backend_duration.with_key(&backend, |h| h.observe(backend_seconds.unwrap_or_default()));
                self.keep_handles(labels);
                true
            }
            None => false,
        }
    }

    /// Keeps the handles of `labels` once each family holds that exact label set (the
    /// backend's only if it exists), replacing handles without a backend histogram.
    #[cold]
    pub(super) fn keep_handles(&self, labels: &RequestLabelsRef<'_>) {
        let latency = LatencyKey { caller_namespace: labels.caller_namespace, service: labels.service, status_class: labels.status_class };
        let backend = BackendKey { service: labels.service, backend: labels.backend };
        // Checked by the borrowed labels first: an overflowed label set (none of its own),
        // or a new one when the handles are full, costs no owned copy.
        let known = self.handles.find_key(labels, |_| ()).is_some();
        if (!known && self.handles.len() >= self.label_cap)
            || self.requests.find_key(labels, |_| ()).is_none()
            || self.request_duration.find_key(&latency, |_| ()).is_none()
        {
            return;
        }
        let full = labels.to_labels();
        let (Some(count), Some(latency)) = (self.requests.get_exact(&full), self.request_duration.get_exact(&latency.to_labels())) else {
            return;
        };
        let backend = self.backend_duration.get_exact(&backend.to_labels());
        self.handles.replace_below(full, RequestHandles { count, latency, backend }, self.label_cap);
    }
}
