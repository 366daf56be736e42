//! Builders shared by the route tests (compiled only for tests).

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;

/// A route rule of `kind` named `namespace/name`, at `index`, forwarding nowhere.
pub(crate) fn rule(
    kind: RouteKind,
    namespace: &str,
    name: &str,
    created: Option<i64>,
    index: usize,
    matches: Vec<RouteMatch>,
) -> Arc<Rule> {
    Arc::new(Rule {
        meta: RouteMeta { route: Arc::new(RouteRef { kind, namespace: namespace.into(), name: name.into() }), created },
        index,
        name: None,
        matches,
        filters: RuleFilters::default(),
        action: RuleAction::Forward(Forward { rewrite: None, backends: BackendSet::default() }),
        timeouts: Timeouts::default(),
        retry: None,
    })
}

/// An HTTPRoute rule in namespace `ns` created at time 0.
pub(crate) fn http_rule(name: &str, index: usize, matches: Vec<RouteMatch>) -> Arc<Rule> {
    rule(RouteKind::Http, "ns", name, Some(0), index, matches)
}

pub(crate) fn prefix(p: &str) -> RouteMatch {
    RouteMatch { path: Some(PathMatch::Prefix(p.into())), ..Default::default() }
}

pub(crate) fn exact_path(p: &str) -> RouteMatch {
    RouteMatch { path: Some(PathMatch::Exact(p.into())), ..Default::default() }
}

pub(crate) fn header(name: &str, value: &str) -> HeaderMatch {
    HeaderMatch { name: HeaderName::from_bytes(name.as_bytes()).unwrap(), value: StringMatch::Exact(value.into()) }
}

pub(crate) fn query(name: &str, value: &str) -> QueryMatch {
    QueryMatch { name: name.into(), value: StringMatch::Exact(value.into()) }
}

/// An owned request, viewed with [`Req::view`].
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
}

impl Req {
    /// `target` is a path with an optional `?query`.
    pub(crate) fn new(method: Method, target: &str, headers: &[(&str, &str)]) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        Self { method, path, query, headers: map }
    }

    pub(crate) fn get(target: &str) -> Self {
        Self::new(Method::GET, target, &[])
    }

    pub(crate) fn view(&self) -> RequestView<'_> {
        RequestView { method: &self.method, path: &self.path, query: self.query.as_deref(), headers: &self.headers }
    }
}

/// Which rule a lookup chose: `(route name, rule index, match index)`.
pub(crate) fn chosen(list: &RouteList, req: &Req) -> Option<(String, usize, Option<usize>)> {
    list.find(&req.view()).map(|m| {
        let match_index = m
            .route_match()
            .map(|rm| m.rule.matches.iter().position(|x| std::ptr::eq(x, rm)).expect("match belongs to its rule"));
        (m.rule.route().name.to_string(), m.rule.index, match_index)
    })
}
