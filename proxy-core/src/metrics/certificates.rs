//! Metrics of the node's workload certificates (refused handshakes are counted by the
//! HBONE side, `ambit_hbone_refusals_total`). Label sets are bounded: `result` by its enum, `identity` by the identities with pods
//! on this node (a dropped identity's series is removed).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::identity::SpiffeId;

/// The outcome of one attempt to obtain a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RenewalResult {
    Success,
    /// The CA could not be reached (retried with backoff).
    Unavailable,
    /// The CA refused to sign.
    Refused,
    /// What the CA returned failed validation (or the request could not be made).
    Invalid,
}

impl RenewalResult {
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Unavailable => "unavailable",
            Self::Refused => "refused",
            Self::Invalid => "invalid",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RenewalLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IdentityLabels {
    pub identity: String,
}

#[derive(Debug, Default)]
pub struct CertificateMetrics {
    renewals: Family<RenewalLabels, Counter>,
    expiry: Family<IdentityLabels, Gauge>,
    ca_unreachable: Gauge,
}

impl CertificateMetrics {
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Arc::new(Self::default());
        registry.register(
            "ambit_certificate_renewals",
            "Attempts to obtain a workload certificate (first issue or renewal), by result",
            metrics.renewals.clone(),
        );
        registry.register(
            "ambit_certificate_expiry_timestamp_seconds",
            "When the certificate held for each identity on this node expires (Unix time)",
            metrics.expiry.clone(),
        );
        registry.register(
            "ambit_ca_unreachable",
            "1 while the last attempt to reach the certificate authority failed",
            metrics.ca_unreachable.clone(),
        );
        metrics
    }

    pub fn renewal(&self, result: RenewalResult) {
        self.renewals.get_or_create(&RenewalLabels { result: result.label() }).inc();
    }

    pub fn renewals(&self, result: RenewalResult) -> u64 {
        self.renewals.get_or_create(&RenewalLabels { result: result.label() }).get()
    }

    pub fn set_expiry(&self, id: &SpiffeId, unix_seconds: u64) {
        let seconds = i64::try_from(unix_seconds).unwrap_or(i64::MAX);
        self.expiry.get_or_create(&IdentityLabels { identity: id.to_string() }).set(seconds);
    }

    pub fn forget(&self, id: &SpiffeId) {
        self.expiry.remove(&IdentityLabels { identity: id.to_string() });
    }

    pub fn set_ca_unreachable(&self, unreachable: bool) {
        self.ca_unreachable.set(i64::from(unreachable));
    }

    pub fn ca_unreachable(&self) -> bool {
        self.ca_unreachable.get() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::TrustDomain;

    #[test]
    fn encodes_renewals_expiry_and_ca_state_and_forgets_dropped_identities() {
        let mut registry = Registry::default();
        let metrics = CertificateMetrics::register(&mut registry);
        let id = SpiffeId::new(TrustDomain::new("cluster.local").unwrap(), "shop", "catalog").unwrap();
        metrics.renewal(RenewalResult::Success);
        metrics.renewal(RenewalResult::Unavailable);
        metrics.set_expiry(&id, 1_900_000_000);
        metrics.set_ca_unreachable(true);
        let encode = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            text
        };
        let text = encode(&registry);
        for line in [
            "ambit_certificate_renewals_total{result=\"success\"} 1",
            "ambit_certificate_renewals_total{result=\"unavailable\"} 1",
            "ambit_certificate_expiry_timestamp_seconds{identity=\"spiffe://cluster.local/ns/shop/sa/catalog\"} 1900000000",
            "ambit_ca_unreachable 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        metrics.forget(&id);
        assert!(!encode(&registry).contains("sa/catalog"));
    }
}
