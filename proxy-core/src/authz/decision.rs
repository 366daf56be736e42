//! Evaluating a pod's policies for one caller: the decision and what decided it.

use serde::Serialize;

use super::model::{Action, NamePattern, PathMatch, PolicyName, Rule, Source, WorkloadPolicies};
use crate::identity::SpiffeId;

/// What is being decided: a connection (no `http`) or one HTTP request on it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The caller's verified identity.
    pub peer: &'a SpiffeId,
    /// The destination pod port.
    pub port: u16,
    pub http: Option<HttpAttempt<'a>>,
}

/// The HTTP attributes of a request; `path` already normalised, without the query.
#[derive(Debug, Clone, Copy)]
pub struct HttpAttempt<'a> {
    pub method: &'a str,
    pub path: &'a str,
}

/// The rule that decided, for logs, metrics and `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decider {
    pub policy: PolicyName,
    /// Index of the rule in the policy's `rules`.
    pub rule: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// No policy selects the pod.
    Open,
    /// An ALLOW rule matched (and no DENY rule did).
    Allowed(Decider),
    /// A DENY rule matched.
    Denied(Decider),
    /// ALLOW policies select the pod and none of their rules matched.
    NotAllowed { policies: Vec<PolicyName> },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Open | Decision::Allowed(_))
    }

    /// The metric/log reason of a refusal; None when allowed.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Decision::Denied(_) => Some("denied_by_rule"),
            Decision::NotAllowed { .. } => Some("not_allowed"),
            Decision::Open | Decision::Allowed(_) => None,
        }
    }
}

/// Decides `attempt` against the policies selecting the destination pod. A connection
/// attempt (no HTTP attributes) never matches a rule with HTTP conditions: callers
/// decide per request when [`stream_needs_http`].
pub fn decide(policies: &WorkloadPolicies, attempt: &Attempt<'_>) -> Decision {
    if policies.policies.is_empty() {
        return Decision::Open;
    }
    if let Some(decider) = first_match(policies, Action::Deny, attempt) {
        return Decision::Denied(decider);
    }
    if !has_allow(policies) {
        return Decision::Open;
    }
    match first_match(policies, Action::Allow, attempt) {
        Some(decider) => Decision::Allowed(decider),
        None => not_allowed(policies),
    }
}

/// The decision for a whole stream (connection) before any request on it is seen, for
/// `peer` calling the pod's `port`. For pods whose policies are L4 only this is
/// [`decide`] without HTTP attributes. Rules with HTTP conditions are decided per
/// request later: an ALLOW one admits the stream (`Allowed` names it; its requests are
/// then decided one by one), a DENY one denies only some requests, so it does not
/// refuse the stream. A refusal here means every request on the stream would be refused.
pub fn decide_stream(policies: &WorkloadPolicies, peer: &SpiffeId, port: u16) -> Decision {
    if policies.policies.is_empty() {
        return Decision::Open;
    }
    let l4 = |rule: &Rule| rule.http.is_none() && l4_matches(rule, peer, port);
    if let Some(decider) = first_match_by(policies, Action::Deny, l4) {
        return Decision::Denied(decider);
    }
    if !has_allow(policies) {
        return Decision::Open;
    }
    match first_match_by(policies, Action::Allow, |rule| l4_matches(rule, peer, port)) {
        Some(decider) => Decision::Allowed(decider),
        None => not_allowed(policies),
    }
}

/// True when a stream from `peer` to the pod's `port` must be parsed as HTTP: some rule
/// with HTTP conditions (ALLOW or DENY) could apply to it, i.e. its ports and sources
/// match. Otherwise no request on the stream can match an HTTP rule, so the stream's
/// [`decide_stream`] decision holds for all of its requests and its bytes are copied.
pub fn stream_needs_http(policies: &WorkloadPolicies, peer: &SpiffeId, port: u16) -> bool {
    policies.policies.iter().flat_map(|policy| policy.rules.iter()).any(|rule| rule.http.is_some() && l4_matches(rule, peer, port))
}

fn has_allow(policies: &WorkloadPolicies) -> bool {
    policies.policies.iter().any(|p| p.action == Action::Allow)
}

/// The refusal when ALLOW policies select the pod and none of their rules matched
/// (names cloned only here, off the path of allowed requests).
pub(super) fn not_allowed(policies: &WorkloadPolicies) -> Decision {
    let names = policies.policies.iter().filter(|p| p.action == Action::Allow).map(|p| p.name.clone()).collect();
    Decision::NotAllowed { policies: names }
}

fn first_match(policies: &WorkloadPolicies, action: Action, attempt: &Attempt<'_>) -> Option<Decider> {
    first_match_by(policies, action, |rule| rule_matches(rule, attempt))
}

fn first_match_by(policies: &WorkloadPolicies, action: Action, matches: impl Fn(&Rule) -> bool) -> Option<Decider> {
    policies.policies.iter().filter(|p| p.action == action).find_map(|policy| {
        let rule = policy.rules.iter().position(&matches)?;
        Some(Decider { policy: policy.name.clone(), rule })
    })
}

/// The rule's source and port conditions (not its HTTP ones).
pub(super) fn l4_matches(rule: &Rule, peer: &SpiffeId, port: u16) -> bool {
    let sources = match &rule.sources {
        None => true,
        Some(sources) => sources.iter().any(|source| source_matches(source, peer)),
    };
    sources && (rule.ports.is_empty() || rule.ports.contains(&port))
}

fn rule_matches(rule: &Rule, attempt: &Attempt<'_>) -> bool {
    l4_matches(rule, attempt.peer, attempt.port) && http_matches(rule, attempt.http)
}

/// The rule's HTTP conditions (a connection, `None`, matches only rules without any).
pub(super) fn http_matches(rule: &Rule, http: Option<HttpAttempt<'_>>) -> bool {
    match (&rule.http, http) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(conditions), Some(request)) => {
            let method = conditions.methods.is_empty() || conditions.methods.iter().any(|m| m == request.method);
            let path = conditions.paths.is_empty() || conditions.paths.iter().any(|p| path_matches(p, request.path));
            method && path
        }
    }
}

/// Service-account and namespace sources name identities of the trust domain of the
/// pod the policy protects, which is the peer's own after the inbound checks; so only
/// the path part is compared. SPIFFE sources compare the whole URI.
fn source_matches(source: &Source, peer: &SpiffeId) -> bool {
    match source {
        Source::ServiceAccount { namespace, name } => {
            pattern_matches(namespace, peer.namespace()) && pattern_matches(name, peer.service_account())
        }
        Source::Namespace(namespace) => pattern_matches(namespace, peer.namespace()),
        Source::Spiffe(pattern) => pattern_matches(pattern, &peer.to_string()),
    }
}

pub(crate) fn pattern_matches(pattern: &NamePattern, value: &str) -> bool {
    match pattern {
        NamePattern::Any => true,
        NamePattern::Exact(exact) => exact == value,
        NamePattern::Prefix(prefix) => value.starts_with(prefix.as_str()),
        NamePattern::Suffix(suffix) => value.ends_with(suffix.as_str()),
    }
}

fn path_matches(condition: &PathMatch, path: &str) -> bool {
    match condition {
        PathMatch::Exact(exact) => exact == path,
        PathMatch::Prefix(prefix) => {
            let prefix = prefix.trim_end_matches('/');
            prefix.is_empty()
                || path == prefix
                || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
        }
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
