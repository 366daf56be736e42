//! Counters of upstream socket creation, served at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

/// How upstream sockets were made.
#[derive(Debug, Default)]
pub struct EgressStats {
    /// In a pod's own network namespace.
    pub pod: AtomicU64,
    /// For hostNetwork pods, whose namespace is the node's.
    pub host_network: AtomicU64,
    /// Refused: no usable namespace for the caller.
    pub failures: AtomicU64,
}

/// Serves [`EgressStats`] at `/metrics`.
#[derive(Debug)]
pub struct EgressCollector(pub std::sync::Arc<EgressStats>);

impl prometheus_client::collector::Collector for EgressCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        {
            let mut family = encoder.encode_descriptor(
                "ambit_upstream_sockets",
                "Upstream sockets created in the caller's network namespace, by namespace kind",
                None,
                MetricType::Counter,
            )?;
            for (netns, value) in [("pod", &stats.pod), ("host_network", &stats.host_network)] {
                ConstCounter::new(value.load(Ordering::Relaxed)).encode(family.encode_family(&[("netns", netns)])?)?;
            }
        }
        let metric = encoder.encode_descriptor(
            "ambit_upstream_socket_failures",
            "Upstream connections refused because no socket could be made in the caller's network namespace",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.failures.load(Ordering::Relaxed)).encode(metric)
    }
}
