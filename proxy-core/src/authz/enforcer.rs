//! The data plane's use of the decision function: decides streams and requests for
//! this node's pods, counts every decision of a pod that policies select, and logs
//! each refusal at a bounded rate (one line per policy and reason every 10 s).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::decision::{Decision, HttpAttempt};
use super::index::{CallerView, Verdict};
use super::model::{Authorization, WorkloadPolicies};
use crate::identity::{canonical, SpiffeId};
use crate::metrics::{AuthzMetrics, DecisionLabels};
use crate::rate_limited_log::KeyedRateLimitedLog;

/// What a decision was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A whole stream (HBONE CONNECT, or a same-node hand-over).
    Connection,
    /// One HTTP request on a stream whose pod has HTTP rules.
    Request,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Connection => "connection",
            Level::Request => "request",
        }
    }
}

/// The outcome for a new stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamVerdict {
    /// No policy selects the pod: bytes are copied, nothing is parsed.
    Open,
    /// Admitted by `decision`; `http`: a rule with HTTP conditions could apply to this
    /// caller and port ([`super::stream_needs_http`]), so each request on the stream is
    /// decided (the stream is parsed as HTTP); otherwise its bytes are copied.
    Admitted { decision: Decision, http: bool },
    /// Every request on the stream would be refused: reset (L4) / 403 on the CONNECT.
    Refused(Decision),
}

/// Decides, counts and logs (one per node, shared by every inbound path).
#[derive(Debug)]
pub struct Enforcer {
    metrics: Arc<AuthzMetrics>,
    refusal_log: KeyedRateLimitedLog<(String, &'static str)>,
}

/// How often one policy's refusals are logged at most.
const LOG_PERIOD: Duration = Duration::from_secs(10);

impl Enforcer {
    pub fn new(metrics: Arc<AuthzMetrics>) -> Arc<Self> {
        Arc::new(Self { metrics, refusal_log: KeyedRateLimitedLog::new(LOG_PERIOD) })
    }

    pub fn metrics(&self) -> &Arc<AuthzMetrics> {
        &self.metrics
    }

    /// The policies selecting the pod at `destination`'s address.
    pub fn policies(authorization: &Authorization, destination: SocketAddr) -> Option<&Arc<WorkloadPolicies>> {
        authorization.for_pod(canonical(destination).ip())
    }

    /// Decides a new stream from `peer` (its verified identity) to `destination`.
    pub fn stream(&self, authorization: &Authorization, peer: &SpiffeId, destination: SocketAddr) -> StreamVerdict {
        let Some(policies) = Self::policies(authorization, destination) else {
            return StreamVerdict::Open;
        };
        let view = policies.view(peer, destination.port());
        let verdict = view.decide_stream(policies);
        self.record(policies, &verdict, Level::Connection, peer, destination, None);
        let (decision, _) = verdict;
        if decision.is_allowed() {
            StreamVerdict::Admitted { http: view.needs_http(), decision }
        } else {
            StreamVerdict::Refused(decision)
        }
    }

    /// Decides one request (`path` normalised, without its query).
    pub fn request(&self, authorization: &Authorization, peer: &SpiffeId, destination: SocketAddr, method: &str, path: &str) -> Decision {
        let Some(policies) = Self::policies(authorization, destination) else {
            return Decision::Open;
        };
        let view = policies.view(peer, destination.port());
        self.request_in(policies, &view, peer, destination, method, path)
    }

    /// [`Enforcer::request`] with the pod's `policies` and the caller's `view` of them
    /// ([`WorkloadPolicies::view`]) already looked up.
    pub fn request_in(
        &self,
        policies: &WorkloadPolicies,
        view: &CallerView,
        peer: &SpiffeId,
        destination: SocketAddr,
        method: &str,
        path: &str,
    ) -> Decision {
        let http = Some(HttpAttempt { method, path });
        let verdict = view.decide(policies, http);
        self.record(policies, &verdict, Level::Request, peer, destination, http);
        verdict.0
    }

    fn record(&self, policies: &WorkloadPolicies, verdict: &Verdict, level: Level, peer: &SpiffeId, destination: SocketAddr, http: Option<HttpAttempt<'_>>) {
        let (decision, at) = verdict;
        let labels = labels(decision, level, policies.index().labels(*at));
        self.metrics.decided(&labels);
        let Some(reason) = decision.reason() else { return };
        let policy = deciding_policies(decision);
        if let Some(suppressed) = self.refusal_log.check(&(policy.clone(), reason)) {
            tracing::warn!(
                peer = %peer,
                %destination,
                %policy,
                rule = %labels.rule,
                reason,
                level = level.label(),
                method = http.map(|h| h.method).unwrap_or(""),
                path = http.map(|h| h.path).unwrap_or(""),
                suppressed,
                "authorization refused (at most one line per policy and reason every 10 s)"
            );
        }
    }
}

/// The metric labels of `decision`; `policy` and `rule` are those of the deciding
/// rule (precomputed by the pod's index, empty when no rule decided).
fn labels(decision: &Decision, level: Level, (policy, rule): (Arc<str>, Arc<str>)) -> DecisionLabels {
    let (verdict, reason) = match decision {
        Decision::Open => ("allow", "open"),
        Decision::Allowed(_) => ("allow", "allowed_by_rule"),
        Decision::Denied(_) => ("deny", "denied_by_rule"),
        Decision::NotAllowed { .. } => ("deny", "not_allowed"),
    };
    DecisionLabels { policy, rule, decision: verdict, reason, level: level.label() }
}

/// The policy (or the ALLOW policies none of which matched) behind a decision.
fn deciding_policies(decision: &Decision) -> String {
    match decision {
        Decision::Open => String::new(),
        Decision::Allowed(d) | Decision::Denied(d) => d.policy.to_string(),
        Decision::NotAllowed { policies } => policies.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
    }
}

/// A short form of `decision` for access logs: `open`, `allowed ns/name#rule`,
/// `denied ns/name#rule` or `not_allowed`.
pub fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Open => "open".to_owned(),
        Decision::Allowed(d) => format!("allowed {}#{}", d.policy, d.rule),
        Decision::Denied(d) => format!("denied {}#{}", d.policy, d.rule),
        Decision::NotAllowed { .. } => "not_allowed".to_owned(),
    }
}
