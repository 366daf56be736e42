//! The per-request form of one pod's policies, built once per published table.
//!
//! [`super::decide`] scans every rule of every policy per request. Here a pod's
//! policies are narrowed, once per caller identity and destination port, to the rules
//! whose sources and ports match that caller ([`CallerView`], cached for a bounded
//! number of callers); a request then checks only the HTTP conditions of that subset.
//! The metric labels of each policy and rule are made here too, so that recording an
//! allowed request allocates nothing. Decisions are exactly those of
//! [`super::decide`], [`super::decide_stream`] and [`super::stream_needs_http`]
//! (checked by a property test).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;

use super::decision::{http_matches, l4_matches, not_allowed, Decider, Decision, HttpAttempt};
use super::model::{Action, Policy, Rule, WorkloadPolicies};
use crate::identity::SpiffeId;

/// At most this many (port, caller) views are cached per pod; further callers are
/// narrowed per call (still correct, just not cached).
const MAX_VIEWS: usize = 1024;

/// Where a rule sits: its policy's index in the pod's list, its index in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleAt {
    pub policy: usize,
    pub rule: usize,
}

/// A decision and the rule that made it (None: open, or no rule matched).
pub(crate) type Verdict = (Decision, Option<RuleAt>);

/// The metric labels of one policy: `namespace/name` and each rule's index.
#[derive(Debug)]
struct PolicyLabels {
    policy: Arc<str>,
    rules: Vec<Arc<str>>,
}

type ViewMap = HashMap<u16, HashMap<SpiffeId, Arc<CallerView>>>;

/// The index of a pod's policies (see the module documentation).
#[derive(Debug)]
pub(crate) struct PolicyIndex {
    labels: Vec<PolicyLabels>,
    has_allow: bool,
    views: ArcSwap<ViewMap>,
    cached: Mutex<usize>,
}

impl PolicyIndex {
    pub fn new(policies: &[Arc<Policy>]) -> Self {
        let labels = policies
            .iter()
            .map(|p| PolicyLabels { policy: p.name.to_string().into(), rules: (0..p.rules.len()).map(|i| i.to_string().into()).collect() })
            .collect();
        let has_allow = policies.iter().any(|p| p.action == Action::Allow);
        Self { labels, has_allow, views: ArcSwap::from_pointee(HashMap::new()), cached: Mutex::new(0) }
    }

    /// The metric labels (`policy`, `rule`) of the rule at `at`; empty ones for None.
    pub fn labels(&self, at: Option<RuleAt>) -> (Arc<str>, Arc<str>) {
        match at.and_then(|at| Some((self.labels.get(at.policy)?, at.rule))) {
            Some((policy, rule)) => (policy.policy.clone(), policy.rules.get(rule).cloned().unwrap_or_else(empty_label)),
            None => (empty_label(), empty_label()),
        }
    }

    /// The rules of `policies` (the list this index was built from) that apply to
    /// `peer` calling `port`.
    pub fn view(&self, policies: &[Arc<Policy>], peer: &SpiffeId, port: u16) -> Arc<CallerView> {
        if let Some(view) = self.views.load().get(&port).and_then(|callers| callers.get(peer)) {
            return view.clone();
        }
        let view = Arc::new(CallerView::new(policies, peer, port));
        self.remember(peer, port, &view);
        view
    }

    #[cold]
    fn remember(&self, peer: &SpiffeId, port: u16, view: &Arc<CallerView>) {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if *cached >= MAX_VIEWS {
            return;
        }
        let mut next = ViewMap::clone(&self.views.load());
        if next.entry(port).or_default().insert(peer.clone(), view.clone()).is_none() {
            *cached += 1;
        }
        self.views.store(Arc::new(next));
    }
}

fn empty_label() -> Arc<str> {
    static EMPTY: OnceLock<Arc<str>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

/// The rules of a pod whose sources and ports match one caller and port, in the
/// order [`super::decide`] tries them.
#[derive(Debug)]
pub struct CallerView {
    deny: Vec<RuleAt>,
    allow: Vec<RuleAt>,
    needs_http: bool,
}

impl CallerView {
    fn new(policies: &[Arc<Policy>], peer: &SpiffeId, port: u16) -> Self {
        let (mut deny, mut allow, mut needs_http) = (Vec::new(), Vec::new(), false);
        for (p, policy) in policies.iter().enumerate() {
            for (r, rule) in policy.rules.iter().enumerate() {
                if !l4_matches(rule, peer, port) {
                    continue;
                }
                needs_http |= rule.http.is_some();
                let list = if policy.action == Action::Deny { &mut deny } else { &mut allow };
                list.push(RuleAt { policy: p, rule: r });
            }
        }
        Self { deny, allow, needs_http }
    }

    /// [`super::stream_needs_http`] for this caller and port.
    pub fn needs_http(&self) -> bool {
        self.needs_http
    }

    /// [`super::decide_stream`] for this caller and port.
    pub(crate) fn decide_stream(&self, policies: &WorkloadPolicies) -> Verdict {
        self.decide_with(policies, |rule| rule.http.is_none(), |_| true)
    }

    /// [`super::decide`] for this caller and port, and `http` (None: a connection).
    pub(crate) fn decide(&self, policies: &WorkloadPolicies, http: Option<HttpAttempt<'_>>) -> Verdict {
        self.decide_with(policies, |rule| http_matches(rule, http), |rule| http_matches(rule, http))
    }

    fn decide_with(&self, policies: &WorkloadPolicies, deny: impl Fn(&Rule) -> bool, allow: impl Fn(&Rule) -> bool) -> Verdict {
        let all = &policies.policies;
        if all.is_empty() {
            return (Decision::Open, None);
        }
        if let Some(at) = first(all, &self.deny, deny) {
            return (Decision::Denied(decider(all, at)), Some(at));
        }
        if !policies.index().has_allow {
            return (Decision::Open, None);
        }
        match first(all, &self.allow, allow) {
            Some(at) => (Decision::Allowed(decider(all, at)), Some(at)),
            None => (not_allowed(policies), None),
        }
    }
}

fn first(policies: &[Arc<Policy>], rules: &[RuleAt], matches: impl Fn(&Rule) -> bool) -> Option<RuleAt> {
    rules.iter().copied().find(|at| policies.get(at.policy).and_then(|p| p.rules.get(at.rule)).is_some_and(&matches))
}

fn decider(policies: &[Arc<Policy>], at: RuleAt) -> Decider {
    Decider { policy: policies[at.policy].name.clone(), rule: at.rule }
}

impl WorkloadPolicies {
    /// The rules that apply to `peer` calling the pod's `port` (cached per caller).
    pub fn view(&self, peer: &SpiffeId, port: u16) -> Arc<CallerView> {
        self.index().view(&self.policies, peer, port)
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
