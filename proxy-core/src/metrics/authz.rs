//! Authorization's metrics: decisions by policy, rule, decision and level, and the
//! open streams a policy change closed. Policy labels name the policies selecting
//! pods of this node only, so the label sets stay bounded (and are capped anyway).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::{LockFreeFamily, MAX_LABEL_SETS};

/// Labels of `ambit_authz_decisions_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `namespace/name` of the deciding policy ("" when no rule matched: `not_allowed`).
    pub policy: Arc<str>,
    /// The index of the deciding rule in its policy ("" when none).
    pub rule: Arc<str>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// `allowed_by_rule`, `denied_by_rule` or `not_allowed`.
    pub reason: &'static str,
    /// `connection` (L4, per stream) or `request` (HTTP, per request).
    pub level: &'static str,
}

/// The authorization families (counted only for pods that policies select).
#[derive(Debug)]
pub struct AuthzMetrics {
    decisions: LockFreeFamily<DecisionLabels, Counter>,
    revoked: Counter,
}

impl Default for AuthzMetrics {
    fn default() -> Self {
        let overflow = |l: &DecisionLabels| DecisionLabels { policy: Arc::from(""), rule: Arc::from(""), ..l.clone() };
        Self { decisions: LockFreeFamily::capped(MAX_LABEL_SETS, overflow, Counter::default()), revoked: Counter::default() }
    }
}

impl AuthzMetrics {
    /// Registers the families in `registry` (names get `ambit_authz_`).
    pub fn register_in(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ambit_authz");
        r.register(
            "decisions",
            "Authorization decisions for pods that policies select, by policy, rule, decision, reason and level",
            self.decisions.clone(),
        );
        r.register("revoked_streams", "Open inbound streams closed because a new policy refuses them", self.revoked.clone());
    }

    pub fn decided(&self, labels: &DecisionLabels) {
        self.decisions.with(labels, |counter| counter.inc());
    }

    /// Decisions counted so far under `labels`.
    pub fn decisions(&self, labels: &DecisionLabels) -> u64 {
        self.decisions.with(labels, |counter| counter.get())
    }

    pub fn revoke(&self) {
        self.revoked.inc();
    }

    /// Streams closed by policy changes so far.
    pub fn revoked(&self) -> u64 {
        self.revoked.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_exported_under_their_documented_names() {
        let mut registry = Registry::default();
        let metrics = AuthzMetrics::default();
        metrics.register_in(&mut registry);
        let labels = DecisionLabels {
            policy: Arc::from("shop/allow"),
            rule: Arc::from("0"),
            decision: "allow",
            reason: "allowed_by_rule",
            level: "request",
        };
        metrics.decided(&labels);
        metrics.revoke();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"ambit_authz_decisions_total{policy="shop/allow",rule="0",decision="allow",reason="allowed_by_rule",level="request"} 1"#),
            "{text}"
        );
        assert!(text.contains("ambit_authz_revoked_streams_total 1"), "{text}");
        assert_eq!(metrics.decisions(&labels), 1);
    }
}
