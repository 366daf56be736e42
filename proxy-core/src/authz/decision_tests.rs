//! `decide` and `decide_stream`: sources, ports, wildcards, HTTP conditions, DENY over ALLOW.

use std::sync::Arc;

use super::*;
use crate::authz::{HttpConditions, Policy};

fn id(text: &str) -> SpiffeId {
    text.parse().unwrap()
}

fn peer(ns: &str, sa: &str) -> SpiffeId {
    id(&format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"))
}

fn exact(s: &str) -> NamePattern {
    NamePattern::Exact(s.to_owned())
}

fn policy(name: &str, action: Action, rules: Vec<Rule>) -> Arc<Policy> {
    Arc::new(Policy { name: PolicyName { namespace: "shop".into(), name: name.into() }, action, rules })
}

fn rule(sources: Option<Vec<Source>>) -> Rule {
    Rule { sources, ports: vec![], http: None }
}

fn sa(ns: &str, name: NamePattern) -> Source {
    Source::ServiceAccount { namespace: exact(ns), name }
}

fn pod(policies: Vec<Arc<Policy>>) -> WorkloadPolicies {
    WorkloadPolicies::new(policies)
}

fn l4(policies: &WorkloadPolicies, peer: &SpiffeId, port: u16) -> Decision {
    decide(policies, &Attempt { peer, port, http: None })
}

fn http(policies: &WorkloadPolicies, peer: &SpiffeId, method: &str, path: &str) -> Decision {
    decide(policies, &Attempt { peer, port: 8080, http: Some(HttpAttempt { method, path }) })
}

fn decider(policy: &str, rule: usize) -> Decider {
    Decider { policy: PolicyName { namespace: "shop".into(), name: policy.into() }, rule }
}

#[test]
fn no_policy_is_open() {
    assert_eq!(l4(&pod(vec![]), &peer("web", "a"), 80), Decision::Open);
    assert_eq!(decide_stream(&pod(vec![]), &peer("web", "a"), 80), Decision::Open);
}

#[test]
fn allow_names_one_service_account() {
    let p = pod(vec![policy("allow", Action::Allow, vec![rule(Some(vec![sa("web", exact("frontend"))]))])]);
    assert_eq!(l4(&p, &peer("web", "frontend"), 80), Decision::Allowed(decider("allow", 0)));
    let refused = l4(&p, &peer("web", "other"), 80);
    assert!(matches!(refused, Decision::NotAllowed { ref policies } if policies.len() == 1));
    assert_eq!(refused.reason(), Some("not_allowed"));
    assert!(!l4(&p, &peer("other", "frontend"), 80).is_allowed());
}

#[test]
fn omitted_sources_match_any_mesh_caller_and_empty_sources_none() {
    let any = pod(vec![policy("any", Action::Allow, vec![rule(None)])]);
    assert!(l4(&any, &peer("x", "y"), 1).is_allowed());
    let none = pod(vec![policy("none", Action::Allow, vec![rule(Some(vec![]))])]);
    assert!(!l4(&none, &peer("x", "y"), 1).is_allowed());
    let no_rules = pod(vec![policy("empty", Action::Allow, vec![])]);
    assert!(!l4(&no_rules, &peer("x", "y"), 1).is_allowed());
}

#[test]
fn wildcards_and_namespaces() {
    let p = pod(vec![policy(
        "wild",
        Action::Allow,
        vec![
            rule(Some(vec![sa("web", NamePattern::Prefix("front".into()))])),
            rule(Some(vec![Source::Namespace(exact("ops"))])),
            rule(Some(vec![Source::ServiceAccount { namespace: NamePattern::Suffix("-ci".into()), name: NamePattern::Any }])),
            rule(Some(vec![Source::Spiffe(NamePattern::Suffix("/sa/robot".into()))])),
        ],
    )]);
    assert_eq!(l4(&p, &peer("web", "frontend-v2"), 1), Decision::Allowed(decider("wild", 0)));
    assert!(!l4(&p, &peer("web", "backend"), 1).is_allowed());
    assert_eq!(l4(&p, &peer("ops", "anyone"), 1), Decision::Allowed(decider("wild", 1)));
    assert_eq!(l4(&p, &peer("team-ci", "job"), 1), Decision::Allowed(decider("wild", 2)));
    assert_eq!(l4(&p, &peer("misc", "robot"), 1), Decision::Allowed(decider("wild", 3)));
    assert!(!l4(&p, &peer("misc", "robot2"), 1).is_allowed());
}

#[test]
fn spiffe_sources_compare_the_whole_uri() {
    let p = pod(vec![policy("s", Action::Allow, vec![rule(Some(vec![Source::Spiffe(exact("spiffe://cluster.local/ns/web/sa/a"))]))])]);
    assert!(l4(&p, &peer("web", "a"), 1).is_allowed());
    assert!(!l4(&p, &id("spiffe://other.domain/ns/web/sa/a"), 1).is_allowed());
}

#[test]
fn ports_narrow_a_rule() {
    let p = pod(vec![policy("p", Action::Allow, vec![Rule { sources: None, ports: vec![8080], http: None }])]);
    assert!(l4(&p, &peer("web", "a"), 8080).is_allowed());
    assert!(!l4(&p, &peer("web", "a"), 9090).is_allowed());
}

#[test]
fn deny_beats_allow() {
    let p = pod(vec![
        policy("allow-all", Action::Allow, vec![rule(None)]),
        policy("deny-ops", Action::Deny, vec![rule(Some(vec![Source::Namespace(exact("ops"))]))]),
    ]);
    assert_eq!(l4(&p, &peer("ops", "x"), 1), Decision::Denied(decider("deny-ops", 0)));
    assert_eq!(l4(&p, &peer("ops", "x"), 1).reason(), Some("denied_by_rule"));
    assert!(l4(&p, &peer("web", "x"), 1).is_allowed());
    // DENY alone leaves everything else open.
    let deny_only = pod(vec![policy("deny-ops", Action::Deny, vec![rule(Some(vec![Source::Namespace(exact("ops"))]))])]);
    assert_eq!(l4(&deny_only, &peer("web", "x"), 1), Decision::Open);
}

fn http_policy() -> WorkloadPolicies {
    let conditions = HttpConditions {
        methods: vec!["GET".into()],
        paths: vec![PathMatch::Prefix("/api".into()), PathMatch::Exact("/health".into())],
    };
    pod(vec![policy(
        "http",
        Action::Allow,
        vec![Rule { sources: Some(vec![sa("web", exact("frontend"))]), ports: vec![], http: Some(conditions) }],
    )])
}

#[test]
fn http_conditions_match_method_and_path() {
    let p = http_policy();
    let frontend = peer("web", "frontend");
    assert!(http(&p, &frontend, "GET", "/api").is_allowed());
    assert!(http(&p, &frontend, "GET", "/api/items").is_allowed());
    assert!(http(&p, &frontend, "GET", "/health").is_allowed());
    assert!(!http(&p, &frontend, "GET", "/health/x").is_allowed());
    assert!(!http(&p, &frontend, "GET", "/apix").is_allowed());
    assert!(!http(&p, &frontend, "POST", "/api").is_allowed());
    assert!(!http(&p, &frontend, "GET", "/admin").is_allowed());
    assert!(!http(&p, &peer("web", "other"), "GET", "/api").is_allowed());
    // A connection attempt never matches a rule with HTTP conditions.
    assert!(!l4(&p, &frontend, 8080).is_allowed());
}

#[test]
fn a_stream_is_admitted_when_some_request_could_be_allowed() {
    let p = http_policy();
    assert_eq!(decide_stream(&p, &peer("web", "frontend"), 8080), Decision::Allowed(decider("http", 0)));
    assert!(!decide_stream(&p, &peer("web", "other"), 8080).is_allowed());
    // An HTTP DENY rule refuses some requests only, an L4 one the whole stream.
    let deny_http = HttpConditions { methods: vec!["POST".into()], paths: vec![] };
    let q = pod(vec![
        policy("deny-post", Action::Deny, vec![Rule { sources: None, ports: vec![], http: Some(deny_http) }]),
        policy("deny-ops", Action::Deny, vec![rule(Some(vec![Source::Namespace(exact("ops"))]))]),
    ]);
    assert_eq!(decide_stream(&q, &peer("web", "a"), 1), Decision::Open);
    assert_eq!(decide_stream(&q, &peer("ops", "a"), 1), Decision::Denied(decider("deny-ops", 0)));
    assert!(!http(&q, &peer("web", "a"), "POST", "/").is_allowed());
    assert!(http(&q, &peer("web", "a"), "GET", "/").is_allowed());
}

#[test]
fn http_is_parsed_only_where_an_http_rule_could_apply() {
    let get = HttpConditions { methods: vec!["GET".into()], paths: vec![] };
    let web = Some(vec![Source::Namespace(exact("web"))]);
    let p = pod(vec![policy(
        "mixed",
        Action::Allow,
        vec![
            Rule { sources: web.clone(), ports: vec![8080], http: Some(get.clone()) },
            Rule { sources: web, ports: vec![9090], http: None },
        ],
    )]);
    let (a, other) = (peer("web", "a"), peer("ops", "a"));
    // Port 8080 has an HTTP rule for web callers: parsed. Port 9090 only an L4 one.
    assert!(stream_needs_http(&p, &a, 8080));
    assert!(!stream_needs_http(&p, &a, 9090));
    assert_eq!(decide_stream(&p, &a, 9090), Decision::Allowed(decider("mixed", 1)));
    // A caller the HTTP rule's sources cannot match is decided at L4 (here: refused).
    assert!(!stream_needs_http(&p, &other, 8080));
    assert!(!decide_stream(&p, &other, 8080).is_allowed());
    // An HTTP rule with no ports applies to every port; a DENY one counts too.
    let q = pod(vec![policy("deny-get", Action::Deny, vec![Rule { sources: None, ports: vec![], http: Some(get) }])]);
    assert!(stream_needs_http(&q, &a, 1));
    assert!(!stream_needs_http(&pod(vec![]), &a, 1));
}

#[test]
fn prefix_paths_match_whole_segments() {
    assert!(path_matches(&PathMatch::Prefix("/api/".into()), "/api"));
    assert!(path_matches(&PathMatch::Prefix("/api/".into()), "/api/x"));
    assert!(!path_matches(&PathMatch::Prefix("/api".into()), "/apix"));
    assert!(path_matches(&PathMatch::Prefix("/".into()), "/anything"));
    assert!(!path_matches(&PathMatch::Exact("/a".into()), "/a/"));
}

#[test]
fn patterns() {
    assert!(pattern_matches(&NamePattern::Any, ""));
    assert!(pattern_matches(&NamePattern::Prefix("ab".into()), "abc"));
    assert!(!pattern_matches(&NamePattern::Prefix("ab".into()), "xab"));
    assert!(pattern_matches(&NamePattern::Suffix("bc".into()), "abc"));
    assert!(!pattern_matches(&NamePattern::Exact("ab".into()), "abc"));
}
