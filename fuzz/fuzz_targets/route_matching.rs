//! Route matching: a route list built from fuzz input (paths, methods, headers, query
//! parameters, regexes; HTTPRoute or GRPCRoute precedence) and a request whose path is
//! normalised first, as the proxy does. Checks that normalisation is idempotent and
//! leaves no dot segments, that the chosen rule does not depend on the order the rules
//! were given in, that the chosen match really matches, and PathPrefix semantics.

#![no_main]

use std::sync::Arc;

use ambit_proxy_core::routes::{
    normalize_path, BackendSet, Forward, HeaderMatch, PathMatch, QueryMatch, RequestView, RouteKind, RouteList,
    RouteMatch, RouteMeta, RouteRef, Rule, RuleAction, RuleFilters, StringMatch, Timeouts,
};
use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

const HEADERS: [&str; 3] = ["x-a", "x-b", "set-cookie"];
const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::OPTIONS];
/// Longest regex taken from the input (keeps compilation cheap).
const MAX_PATTERN: usize = 24;

#[derive(Arbitrary, Debug)]
struct Input {
    grpc: bool,
    rules: Vec<RuleInput>,
    request: RequestInput,
}

#[derive(Arbitrary, Debug)]
struct RuleInput {
    route: u8,
    created: Option<i8>,
    matches: Vec<MatchInput>,
}

#[derive(Arbitrary, Debug)]
struct MatchInput {
    path: Option<PathInput>,
    method: Option<u8>,
    headers: Vec<(u8, StringInput)>,
    query: Vec<(String, StringInput)>,
}

#[derive(Arbitrary, Debug)]
enum PathInput {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Arbitrary, Debug)]
enum StringInput {
    Exact(String),
    Regex(String),
}

#[derive(Arbitrary, Debug)]
struct RequestInput {
    method: u8,
    path: String,
    query: Option<String>,
    headers: Vec<(u8, String)>,
}

fn string_match(input: &StringInput) -> Option<StringMatch> {
    match input {
        StringInput::Exact(s) => Some(StringMatch::Exact(s.clone())),
        StringInput::Regex(p) if p.len() <= MAX_PATTERN => StringMatch::regex(p).ok(),
        StringInput::Regex(_) => None,
    }
}

fn path_match(input: &PathInput) -> Option<PathMatch> {
    match input {
        PathInput::Exact(p) => Some(PathMatch::Exact(p.clone())),
        PathInput::Prefix(p) => Some(PathMatch::Prefix(p.clone())),
        PathInput::Regex(p) if p.len() <= MAX_PATTERN => PathMatch::regex(p).ok(),
        PathInput::Regex(_) => None,
    }
}

fn route_match(input: &MatchInput) -> RouteMatch {
    RouteMatch {
        path: input.path.as_ref().and_then(path_match),
        method: input.method.map(|m| METHODS[usize::from(m) % METHODS.len()].clone()),
        headers: (input.headers.iter().take(4))
            .filter_map(|(name, value)| {
                let name = HeaderName::from_static(HEADERS[usize::from(*name) % HEADERS.len()]);
                Some(HeaderMatch { name, value: string_match(value)? })
            })
            .collect(),
        query: (input.query.iter().take(4))
            .filter_map(|(name, value)| Some(QueryMatch { name: name.clone(), value: string_match(value)? }))
            .collect(),
    }
}

/// Rules of up to four routes; a rule's index is its position within its route, so
/// that (route, index) names one rule.
fn rules(kind: RouteKind, inputs: &[RuleInput]) -> Vec<Arc<Rule>> {
    let mut per_route = [0usize; 4];
    inputs
        .iter()
        .take(8)
        .map(|input| {
            let route = usize::from(input.route) % 4;
            let index = per_route[route];
            per_route[route] += 1;
            let route_ref = RouteRef { kind, namespace: "ns".into(), name: format!("r{route}").into() };
            Arc::new(Rule {
                meta: RouteMeta { route: Arc::new(route_ref), created: input.created.map(i64::from) },
                index,
                name: None,
                matches: input.matches.iter().take(4).map(route_match).collect(),
                filters: RuleFilters::default(),
                action: RuleAction::Forward(Forward { rewrite: None, backends: BackendSet::default() }),
                timeouts: Timeouts::default(),
                retry: None,
            })
        })
        .collect()
}

/// Which rule and match a lookup chose: (route name, rule index, match index).
fn chosen(list: &RouteList, request: &RequestView<'_>) -> Option<(String, usize, Option<usize>)> {
    let matched = list.find(request)?;
    let rule = matched.rule;
    if let Some(m) = matched.route_match() {
        assert!(m.matches(request), "the chosen match does not match");
    }
    let index = matched.route_match().map(|m| rule.matches.iter().position(|x| std::ptr::eq(x, m)).unwrap());
    Some((rule.route().name.to_string(), rule.index, index))
}

/// PathPrefix semantics, written out independently: the prefix without its trailing
/// `/` must be the whole path or be followed by `/`.
fn check_prefix_semantics(list: &RouteList, path: &str) {
    for m in list.matches() {
        if let Some(PathMatch::Prefix(prefix)) = m.path_match() {
            let core = prefix.trim_end_matches('/');
            let expected = path == core || path.starts_with(&format!("{core}/"));
            assert_eq!(PathMatch::Prefix(prefix.clone()).matches(path), expected, "prefix {prefix:?} on {path:?}");
        }
    }
}

fn check_normalisation(raw: &str) -> Option<String> {
    let path = normalize_path(raw).ok()?.into_owned();
    assert_eq!(normalize_path(&path).ok().as_deref(), Some(path.as_str()), "normalising {raw:?} is not idempotent");
    if path.starts_with('/') {
        let inner = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
        let dots = !inner.is_empty() && inner.split('/').any(|s| matches!(s, "" | "." | ".."));
        assert!(!dots, "{raw:?} normalised to {path:?}");
    }
    Some(path)
}

fuzz_target!(|input: Input| {
    let raw = format!("/{}", input.request.path);
    let Some(path) = check_normalisation(&raw) else { return };
    let _ = check_normalisation(&input.request.path);
    let mut headers = HeaderMap::new();
    for (name, value) in input.request.headers.iter().take(6) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(HeaderName::from_static(HEADERS[usize::from(*name) % HEADERS.len()]), value);
        }
    }
    let method = METHODS[usize::from(input.request.method) % METHODS.len()].clone();
    let request = RequestView { method: &method, path: &path, query: input.request.query.as_deref(), headers: &headers };
    let kind = if input.grpc { RouteKind::Grpc } else { RouteKind::Http };
    let mut rules = rules(kind, &input.rules);
    let list = RouteList::new(kind, rules.clone());
    let first = chosen(&list, &request);
    rules.reverse();
    let reversed = chosen(&RouteList::new(kind, rules), &request);
    assert_eq!(first, reversed, "the chosen rule depends on the order of the rules");
    check_prefix_semantics(&list, &path);
});
