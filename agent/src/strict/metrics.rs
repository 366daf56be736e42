//! `ambit_strict_*` metrics, read from the guard's per-CPU counters at scrape time.

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use super::StrictGuard;

/// Index of each `ambit_ebpf_common::StrictStat` and its `reason` label.
const DROPS: [(usize, &str); 3] = [(0, "forwarded"), (1, "untrusted_socket"), (2, "unparsed")];
const TRUSTED: usize = 3;

/// Encodes the guard's counters.
pub struct StrictCollector(pub Arc<StrictGuard>);

impl std::fmt::Debug for StrictCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StrictCollector")
    }
}

impl prometheus_client::collector::Collector for StrictCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(stats) = self.0.stats() else { return Ok(()) };
        let stat = |i: usize| stats.get(i).copied().unwrap_or(0);
        {
            let mut family = encoder.encode_descriptor(
                "ambit_strict_drops",
                "TCP connection attempts to STRICT pods dropped in the kernel, by reason: forwarded (no local socket: other pods, other nodes), untrusted_socket (a local process outside the trusted cgroups), unparsed",
                None,
                MetricType::Counter,
            )?;
            for (index, reason) in DROPS {
                ConstCounter::new(stat(index)).encode(family.encode_family(&[("reason", reason)])?)?;
            }
        }
        let metric = encoder.encode_descriptor(
            "ambit_strict_trusted_connects",
            "TCP connection attempts to STRICT pods let through from trusted cgroups (the node proxy, probes)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stat(TRUSTED)).encode(metric)
    }
}
