//! The index decides exactly as the plain scan does, and labels the deciding rule.

use proptest::prelude::*;

use super::*;
use crate::authz::{decide, decide_stream, stream_needs_http, Attempt, HttpConditions, NamePattern, PathMatch, PolicyName, Source};

fn peer(ns: &str, sa: &str) -> SpiffeId {
    format!("spiffe://cluster.local/ns/{ns}/sa/{sa}").parse().unwrap()
}

fn name_pattern() -> impl Strategy<Value = NamePattern> {
    prop_oneof![
        Just(NamePattern::Any),
        prop::sample::select(vec!["a", "b", "x", "y"]).prop_map(|s| NamePattern::Exact(s.to_owned())),
        prop::sample::select(vec!["a", "x", ""]).prop_map(|s| NamePattern::Prefix(s.to_owned())),
        prop::sample::select(vec!["b", "y"]).prop_map(|s| NamePattern::Suffix(s.to_owned())),
    ]
}

fn spiffe_pattern() -> impl Strategy<Value = NamePattern> {
    prop_oneof![
        Just(NamePattern::Any),
        Just(NamePattern::Exact("spiffe://cluster.local/ns/a/sa/x".to_owned())),
        Just(NamePattern::Prefix("spiffe://cluster.local/ns/a/".to_owned())),
        Just(NamePattern::Suffix("/sa/y".to_owned())),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        (name_pattern(), name_pattern()).prop_map(|(namespace, name)| Source::ServiceAccount { namespace, name }),
        name_pattern().prop_map(Source::Namespace),
        spiffe_pattern().prop_map(Source::Spiffe),
    ]
}

fn http_conditions() -> impl Strategy<Value = HttpConditions> {
    let methods = prop::sample::subsequence(vec!["GET".to_owned(), "POST".to_owned()], 0..=2);
    let paths = prop::sample::subsequence(vec![PathMatch::Exact("/a".to_owned()), PathMatch::Prefix("/b".to_owned())], 0..=2);
    (methods, paths).prop_map(|(methods, paths)| HttpConditions { methods, paths })
}

fn rule() -> impl Strategy<Value = Rule> {
    let sources = prop::option::of(prop::collection::vec(source(), 0..3));
    let ports = prop::sample::subsequence(vec![80u16, 8080], 0..=2);
    (sources, ports, prop::option::of(http_conditions())).prop_map(|(sources, ports, http)| Rule { sources, ports, http })
}

fn pod() -> impl Strategy<Value = WorkloadPolicies> {
    let policy = (prop::bool::ANY, prop::collection::vec(rule(), 0..4));
    prop::collection::vec(policy, 0..5).prop_map(|policies| {
        let policies = policies
            .into_iter()
            .enumerate()
            .map(|(i, (deny, rules))| {
                let action = if deny { Action::Deny } else { Action::Allow };
                Arc::new(Policy { name: PolicyName::new("shop", &format!("p{i}")), action, rules })
            })
            .collect();
        WorkloadPolicies::new(policies)
    })
}

type Request = Option<(&'static str, &'static str)>;

fn attempt() -> impl Strategy<Value = (SpiffeId, u16, Request)> {
    let caller = (prop::sample::select(vec!["a", "b", "ab"]), prop::sample::select(vec!["x", "y", "xy"]));
    let request = prop::option::of((prop::sample::select(vec!["GET", "POST", "PUT"]), prop::sample::select(vec!["/a", "/b", "/b/c", "/bc", "/"])));
    (caller, prop::sample::select(vec![80u16, 8080, 9090]), request).prop_map(|((ns, sa), port, request)| (peer(ns, sa), port, request))
}

/// The rule a verdict names is the one its decision names.
fn names_its_rule(policies: &WorkloadPolicies, (decision, at): &Verdict) -> bool {
    let decider = match decision {
        Decision::Allowed(d) | Decision::Denied(d) => Some(d),
        Decision::Open | Decision::NotAllowed { .. } => None,
    };
    match (decider, at) {
        (None, None) => true,
        (Some(d), Some(at)) => policies.policies[at.policy].name == d.policy && at.rule == d.rule,
        _ => false,
    }
}

proptest! {
    #[test]
    fn the_index_decides_as_the_plain_scan(policies in pod(), attempts in prop::collection::vec(attempt(), 1..8)) {
        // Twice: the second round reads the cached views.
        for (peer, port, request) in attempts.iter().chain(attempts.iter()) {
            let http = request.map(|(method, path)| HttpAttempt { method, path });
            let view = policies.view(peer, *port);
            let verdict = view.decide(&policies, http);
            prop_assert_eq!(&verdict.0, &decide(&policies, &Attempt { peer, port: *port, http }));
            prop_assert!(names_its_rule(&policies, &verdict));
            let stream = view.decide_stream(&policies);
            prop_assert_eq!(&stream.0, &decide_stream(&policies, peer, *port));
            prop_assert!(names_its_rule(&policies, &stream));
            prop_assert_eq!(view.needs_http(), stream_needs_http(&policies, peer, *port));
        }
    }
}

#[test]
fn labels_name_the_policy_and_the_rule_index() {
    let rules = vec![Rule { sources: Some(vec![]), ports: vec![], http: None }, Rule { sources: None, ports: vec![], http: None }];
    let policy = Arc::new(Policy { name: PolicyName::new("shop", "allow"), action: Action::Allow, rules });
    let policies = WorkloadPolicies::new(vec![policy]);
    let (decision, at) = policies.view(&peer("web", "a"), 80).decide(&policies, None);
    assert!(decision.is_allowed());
    let (policy, rule) = policies.index().labels(at);
    assert_eq!((&*policy, &*rule), ("shop/allow", "1"));
    let (policy, rule) = policies.index().labels(None);
    assert_eq!((&*policy, &*rule), ("", ""));
}

#[test]
fn views_are_cached_per_caller_and_port() {
    let policy = Arc::new(Policy { name: PolicyName::new("shop", "allow"), action: Action::Allow, rules: vec![] });
    let policies = WorkloadPolicies::new(vec![policy]);
    let first = policies.view(&peer("web", "a"), 80);
    assert!(Arc::ptr_eq(&first, &policies.view(&peer("web", "a"), 80)));
    assert!(!Arc::ptr_eq(&first, &policies.view(&peer("web", "a"), 81)));
    assert!(!Arc::ptr_eq(&first, &policies.view(&peer("web", "b"), 80)));
}
