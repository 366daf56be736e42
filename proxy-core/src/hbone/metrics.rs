//! HBONE's metrics: refusals by reason, and tunnel streams by direction, peer identity
//! and outcome. Identity labels are namespace and service account (bounded by the
//! cluster's service accounts; capped like the data path's caller labels).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::identity::SpiffeId;
use crate::metrics::{AuthzMetrics, LockFreeFamily, MAX_LABEL_SETS};
use crate::tls::Refusal;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: &'static str,
}

/// Labels of `ambit_hbone_streams_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StreamLabels {
    /// `inbound` (this node terminates) or `outbound` (this node's caller).
    pub direction: &'static str,
    /// `hbone` (mutual TLS between nodes) or `local` (same node, no TLS).
    pub tunnel: &'static str,
    /// The source identity's namespace and service account.
    pub source_namespace: Arc<str>,
    pub source_service_account: Arc<str>,
    /// The destination identity's namespace and service account.
    pub destination_namespace: Arc<str>,
    pub destination_service_account: Arc<str>,
    /// `ok`, `denied`, `not_found`, `bad_request`, `unreachable`, `failed`.
    pub outcome: &'static str,
}

/// The HBONE families, registered once at start.
#[derive(Debug, Default)]
pub struct HboneMetrics {
    refusals: Family<RefusalLabels, Counter>,
    streams: LockFreeFamily<StreamLabels, Counter>,
    handshakes: Counter,
    /// Authorization's families, registered beside HBONE's (`ambit_authz_*`).
    authz: Arc<AuthzMetrics>,
}

fn blank() -> Arc<str> {
    Arc::from("")
}

impl HboneMetrics {
    /// Creates the families and registers them in `registry` (names get `ambit_hbone_`).
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            refusals: Family::default(),
            streams: LockFreeFamily::capped(
                MAX_LABEL_SETS,
                |l| StreamLabels {
                    source_namespace: blank(),
                    source_service_account: blank(),
                    destination_namespace: blank(),
                    destination_service_account: blank(),
                    ..l.clone()
                },
                Counter::default(),
            ),
            handshakes: Counter::default(),
            authz: Arc::default(),
        };
        metrics.authz.register_in(registry);
        let r = registry.sub_registry_with_prefix("ambit_hbone");
        r.register("refusals", "HBONE connections or streams refused, by reason", metrics.refusals.clone());
        r.register("streams", "HBONE tunnel streams, by direction, tunnel, identities and outcome", metrics.streams.clone());
        r.register("client_handshakes", "Outbound HBONE TLS connections established", metrics.handshakes.clone());
        Arc::new(metrics)
    }

    pub fn refused(&self, reason: Refusal) {
        self.refusals.get_or_create(&RefusalLabels { reason: reason.label() }).inc();
    }

    /// Refusals counted so far for `reason`.
    pub fn refusals(&self, reason: Refusal) -> u64 {
        self.refusals.get_or_create(&RefusalLabels { reason: reason.label() }).get()
    }

    pub fn stream(&self, labels: &StreamLabels) {
        self.streams.with(labels, |counter| counter.inc());
    }

    /// Streams counted so far under `labels`.
    pub fn streams(&self, labels: &StreamLabels) -> u64 {
        self.streams.with(labels, |counter| counter.get())
    }

    pub fn handshake(&self) {
        self.handshakes.inc();
    }

    /// The authorization metrics (registered with these).
    pub fn authz(&self) -> &Arc<AuthzMetrics> {
        &self.authz
    }

    pub fn handshakes(&self) -> u64 {
        self.handshakes.get()
    }
}

/// Stream labels for a tunnel between `source` and `destination`.
pub fn stream_labels(
    direction: &'static str,
    tunnel: &'static str,
    source: &SpiffeId,
    destination: Option<&SpiffeId>,
    outcome: &'static str,
) -> StreamLabels {
    let (dns, dsa) = destination.map_or((blank(), blank()), |d| (d.namespace().into(), d.service_account().into()));
    StreamLabels {
        direction,
        tunnel,
        source_namespace: source.namespace().into(),
        source_service_account: source.service_account().into(),
        destination_namespace: dns,
        destination_service_account: dsa,
        outcome,
    }
}
