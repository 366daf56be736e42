//! `ambit-agent explain authz`: may this caller call this pod on this port (with this
//! method and path)? Answered as the callee's node decides: first per connection
//! ([`ambit_proxy_core::authz::decide_stream`]), then, when an HTTP rule could apply
//! to the caller and port ([`ambit_proxy_core::authz::stream_needs_http`]), per request ([`ambit_proxy_core::authz::decide`], on the normalised
//! path), naming the policy and rule that decide.

use std::fmt;

use ambit_proxy_core::authz::{decide, decide_stream, normalize, stream_needs_http, Action, Attempt, Decision, HttpAttempt, WorkloadPolicies};
use ambit_proxy_core::identity::{SpiffeId, TrustDomain};
use anyhow::{anyhow, Context};

use crate::cluster::{ClusterState, ObjectKey};
use crate::translate::authz::{compile_all, pod_policies, PolicyStatus};
use crate::translate::pod_in_mesh;

/// What is asked.
#[derive(Debug, Clone)]
pub struct AuthzQuestion<'a> {
    /// `NAMESPACE/SERVICEACCOUNT` or a SPIFFE ID.
    pub from: &'a str,
    /// `NAMESPACE/POD`.
    pub to: &'a str,
    pub port: u16,
    /// The request's method and path (with an optional query), when HTTP rules matter.
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
}

/// The answer.
#[derive(Debug)]
pub struct AuthzExplanation {
    pub caller: SpiffeId,
    pub pod: ObjectKey,
    pub port: u16,
    /// Method and normalised path, when asked per request.
    pub request: Option<(String, String)>,
    /// The pod is not in the mesh: nothing is enforced for it.
    pub pod_in_mesh: bool,
    /// The valid policies selecting the pod (empty: open).
    pub policies: WorkloadPolicies,
    /// Where the decision was made.
    pub level: Level,
    pub decision: Decision,
    /// Invalid policies of the pod's namespace (ignored).
    pub invalid: Vec<PolicyStatus>,
}

/// Where the data plane decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Once per connection (L4 policies, or a refusal before any request).
    Connection,
    /// Per HTTP request (the pod's policies have HTTP rules).
    Request,
}

/// The caller's identity: `ns/sa` in `trust_domain`, or a full SPIFFE ID.
pub fn caller(from: &str, trust_domain: &TrustDomain) -> anyhow::Result<SpiffeId> {
    if from.starts_with("spiffe://") {
        return from.parse::<SpiffeId>().map_err(|e| anyhow!("--from {from:?}: {e}"));
    }
    let (ns, sa) = from.split_once('/').ok_or_else(|| anyhow!("--from must be NAMESPACE/SERVICEACCOUNT or spiffe://..., got {from:?}"))?;
    SpiffeId::new(trust_domain.clone(), ns, sa).map_err(|e| anyhow!("--from {from:?}: {e}"))
}

/// Answers `question` from the store.
pub fn explain_authz(state: &ClusterState, question: &AuthzQuestion<'_>, trust_domain: &TrustDomain) -> anyhow::Result<AuthzExplanation> {
    let caller = caller(question.from, trust_domain)?;
    let (ns, name) = question.to.split_once('/').ok_or_else(|| anyhow!("--to must be NAMESPACE/POD, got {:?}", question.to))?;
    let key = ObjectKey::new(ns, name);
    let pod = state.pods.get(&key).ok_or_else(|| anyhow!("pod {key} not found"))?;
    let request = match (question.method, question.path) {
        (None, None) => None,
        (method, path) => {
            let method = method.unwrap_or("GET").to_string();
            let raw = path.unwrap_or("/");
            let without_query = raw.split(['?', '#']).next().unwrap_or_default();
            let path = normalize(without_query).with_context(|| format!("--path {raw:?}: the proxy answers 400"))?;
            Some((method, path))
        }
    };
    let (by_namespace, statuses) = compile_all(state);
    let policies = pod_policies(&key, pod, &by_namespace).map(|p| (*p).clone()).unwrap_or_default();
    let (level, decision) = decision(&policies, &caller, question.port, request.as_ref());
    let invalid = statuses.into_iter().filter(|s| s.namespace == key.namespace && !s.ok()).collect();
    Ok(AuthzExplanation { caller, pod: key, port: question.port, request, pod_in_mesh: pod_in_mesh(state, pod), policies, level, decision, invalid })
}

/// As the inbound side decides: the connection first; then, when an HTTP rule could
/// apply to this caller and port (the stream is then parsed as HTTP), each request.
fn decision(policies: &WorkloadPolicies, caller: &SpiffeId, port: u16, request: Option<&(String, String)>) -> (Level, Decision) {
    let stream = decide_stream(policies, caller, port);
    let Some((method, path)) = request.filter(|_| stream.is_allowed() && stream_needs_http(policies, caller, port)) else {
        return (Level::Connection, stream);
    };
    let http = Some(HttpAttempt { method, path });
    (Level::Request, decide(policies, &Attempt { peer: caller, port, http }))
}

impl AuthzExplanation {
    /// Whether an HTTP rule could apply to this caller and port, the connection is
    /// admitted, and no request was given.
    fn http_rules_unasked(&self) -> bool {
        self.request.is_none() && stream_needs_http(&self.policies, &self.caller, self.port) && self.decision.is_allowed()
    }
}

impl fmt::Display for AuthzExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "caller {} -> pod {} port {}", self.caller, self.pod, self.port)?;
        match &self.request {
            Some((method, path)) => writeln!(f, " ({method} {path})")?,
            None => writeln!(f, " (connection)")?,
        }
        if !self.pod_in_mesh {
            writeln!(f, "note: the pod is not in the mesh: its node does not enforce policies for it")?;
        }
        for status in &self.invalid {
            writeln!(f, "note: AuthorizationPolicy {}/{} is invalid and ignored: {}", status.namespace, status.name, status.accepted.message)?;
        }
        for policy in &self.policies.policies {
            let action = if policy.action == Action::Allow { "ALLOW" } else { "DENY" };
            writeln!(f, "selected by {} ({action}, {} rule(s))", policy.name, policy.rules.len())?;
        }
        let at = match self.level {
            Level::Connection if matches!(self.decision, Decision::Open) => "",
            Level::Connection => "connection ",
            Level::Request => "request ",
        };
        write!(f, "{at}")?;
        match &self.decision {
            Decision::Open => writeln!(f, "open: no policy selects the pod")?,
            Decision::Allowed(d) => writeln!(f, "ALLOWED by {} rule {}", d.policy, d.rule)?,
            Decision::Denied(d) => writeln!(f, "DENIED by {} rule {} (DENY)", d.policy, d.rule)?,
            Decision::NotAllowed { policies } => {
                let names: Vec<String> = policies.iter().map(ToString::to_string).collect();
                writeln!(f, "DENIED: no rule of the ALLOW policies {} matches", names.join(", "))?
            }
        }
        if self.http_rules_unasked() {
            writeln!(f, "note: the pod's policies have HTTP rules: each request on the connection is decided too; give --method and --path to ask about one")?;
        }
        Ok(())
    }
}
