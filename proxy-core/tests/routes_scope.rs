//! GEP-1294 caller scopes at the `RouteSet` level: consumer routes in namespace A
//! govern callers in A only; every other caller sees the producer routes (or none).

use std::collections::HashMap;
use std::sync::Arc;

use ambit_proxy_core::config::{Decision, RouteSet};
use ambit_proxy_core::routes::{
    BackendSet, Forward, PathMatch, RequestView, RouteKind, RouteList, RouteMatch, RouteMeta, RouteRef, Rule,
    RuleAction, RuleFilters, Timeouts,
};
use http::{HeaderMap, Method};
use proptest::prelude::*;

const NAMESPACES: [&str; 3] = ["ns-a", "ns-b", "ns-c"];
const PATHS: [&str; 4] = ["/", "/a", "/a/b", "/b"];

fn rule(namespace: &str, name: &str, index: usize, path: Option<&str>) -> Arc<Rule> {
    Arc::new(Rule {
        meta: RouteMeta {
            route: Arc::new(RouteRef { kind: RouteKind::Http, namespace: namespace.into(), name: name.into() }),
            created: Some(0),
        },
        index,
        name: None,
        matches: path
            .map(|p| vec![RouteMatch { path: Some(PathMatch::Prefix(p.into())), ..Default::default() }])
            .unwrap_or_default(),
        filters: RuleFilters::default(),
        action: RuleAction::Forward(Forward { rewrite: None, backends: BackendSet::default() }),
        timeouts: Timeouts::default(),
        retry: None,
    })
}

/// A comparable summary of a decision: which rule of which route.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NoRoutes,
    NoMatch,
    Matched(String, usize),
}

fn outcome(set: &RouteSet, caller: &str, path: &str) -> Outcome {
    let headers = HeaderMap::new();
    let request = RequestView { method: &Method::GET, path, query: None, headers: &headers };
    match set.decide(caller, &request) {
        Decision::NoRoutes => Outcome::NoRoutes,
        Decision::NoMatch => Outcome::NoMatch,
        Decision::Matched(m) => Outcome::Matched(m.rule.route().to_string(), m.rule.index),
    }
}

/// Rule paths of one route list (None = a rule without matches).
fn arb_list() -> impl Strategy<Value = Vec<Option<&'static str>>> {
    prop::collection::vec(prop::option::of(prop::sample::select(&["/a", "/a/b", "/b", "/c"][..])), 1..4)
}

fn build(namespace: &str, paths: &[Option<&str>]) -> Arc<RouteList> {
    let rules = paths.iter().enumerate().map(|(i, p)| rule(namespace, "route", i, *p)).collect();
    Arc::new(RouteList::new(RouteKind::Http, rules))
}

#[test]
fn consumer_routes_replace_producer_routes_for_their_namespace_only() {
    let mut set = RouteSet { producer: Some(build("svc-ns", &[Some("/a")])), consumers: HashMap::new(), ..Default::default() };
    set.consumers.insert("ns-a".into(), build("ns-a", &[Some("/b")]));
    // The consumer's own callers: only its routes, producer routes no longer apply.
    assert_eq!(outcome(&set, "ns-a", "/b"), Outcome::Matched("HTTPRoute ns-a/route".into(), 0));
    assert_eq!(outcome(&set, "ns-a", "/a"), Outcome::NoMatch);
    // Everyone else, including the Service's own namespace: producer routes.
    for caller in ["ns-b", "svc-ns"] {
        assert_eq!(outcome(&set, caller, "/a"), Outcome::Matched("HTTPRoute svc-ns/route".into(), 0));
        assert_eq!(outcome(&set, caller, "/b"), Outcome::NoMatch);
    }
    // Without producer routes, other callers get no routing at all.
    set.producer = None;
    assert_eq!(outcome(&set, "ns-b", "/a"), Outcome::NoRoutes);
    assert_eq!(outcome(&set, "ns-a", "/b"), Outcome::Matched("HTTPRoute ns-a/route".into(), 0));
    assert!(!set.is_empty());
    assert!(RouteSet::default().is_empty());
}

proptest! {
    /// Adding, changing or removing the consumer routes of namespace A never changes
    /// the decision for a caller in any other namespace.
    #[test]
    fn consumer_routes_of_one_namespace_never_affect_other_callers(
        producer in prop::option::of(arb_list()),
        consumers in prop::collection::vec(prop::option::of(arb_list()), NAMESPACES.len()),
        changed_ns in 0..NAMESPACES.len(),
        replacement in prop::option::of(arb_list()),
    ) {
        let make = |consumers: &[Option<Vec<Option<&'static str>>>]| RouteSet {
            producer: producer.as_ref().map(|p| build("svc-ns", p)),
            consumers: NAMESPACES
                .iter()
                .zip(consumers)
                .filter_map(|(ns, c)| c.as_ref().map(|c| (Arc::<str>::from(*ns), build(ns, c))))
                .collect(),
            ..Default::default()
        };
        let before = make(&consumers);
        let mut changed = consumers.clone();
        changed[changed_ns] = replacement;
        let after = make(&changed);
        for caller in NAMESPACES.iter().chain(&["svc-ns", "elsewhere"]) {
            for path in PATHS {
                let (b, a) = (outcome(&before, caller, path), outcome(&after, caller, path));
                if *caller != NAMESPACES[changed_ns] {
                    prop_assert_eq!(&b, &a, "caller {} path {}", caller, path);
                }
                // Whatever the caller, a matched rule is its own consumer route or a producer route.
                if let Outcome::Matched(route, _) = &b {
                    let own = format!("HTTPRoute {caller}/route");
                    prop_assert!(route == &own || route == "HTTPRoute svc-ns/route", "{} got {}", caller, route);
                    if consumers.get(NAMESPACES.iter().position(|n| n == caller).unwrap_or(usize::MAX)).is_some_and(|c| c.is_some()) {
                        prop_assert_eq!(route, &own);
                    }
                }
            }
        }
    }
}
