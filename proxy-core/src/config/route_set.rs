//! The routes attached to one Service port, by caller scope (GEP-1294).

use std::collections::HashMap;
use std::sync::Arc;

use crate::routes::{L4Routes, MatchedRule, RouteList, RequestView};

/// Producer routes apply to every caller; consumer routes apply only to callers in
/// their own namespace, and for those callers replace the producer routes (whatever
/// their kinds: a consumer TCPRoute replaces a producer HTTPRoute for its namespace).
///
/// One scope holds request-level routes (HTTPRoute or GRPCRoute) or connection-level
/// routes (TLSRoute or TCPRoute), never both: the translation drops the losers
/// (GRPCRoute > HTTPRoute > TLSRoute > TCPRoute). Should both be present, the
/// request-level routes win.
#[derive(Debug, Default)]
pub struct RouteSet {
    /// Routes in the Service's own namespace.
    pub producer: Option<Arc<RouteList>>,
    /// Routes in other namespaces, by the route's (= the caller's) namespace.
    pub consumers: HashMap<Arc<str>, Arc<RouteList>>,
    /// TLSRoutes or TCPRoutes in the Service's own namespace.
    pub l4_producer: Option<Arc<L4Routes>>,
    /// TLSRoutes or TCPRoutes in other namespaces, by namespace.
    pub l4_consumers: HashMap<Arc<str>, Arc<L4Routes>>,
}

/// The routes that govern one caller.
#[derive(Clone, Copy, Debug)]
pub enum ScopeRoutes<'a> {
    /// No routes: plain load balancing over the Service's endpoints.
    None,
    /// HTTPRoutes or GRPCRoutes, per request.
    Request(&'a Arc<RouteList>),
    /// TLSRoutes or TCPRoutes, per connection.
    Connection(&'a Arc<L4Routes>),
}

/// What the route table says to do with one request.
#[derive(Debug)]
pub enum Decision<'a> {
    /// No routes apply to this caller: proceed as if there were no mesh.
    NoRoutes,
    /// Routes apply but none matches: the proxy rejects the request (404).
    NoMatch,
    /// This rule applies.
    Matched(MatchedRule<'a>),
}

impl RouteSet {
    pub fn is_empty(&self) -> bool {
        self.producer.is_none() && self.consumers.is_empty() && self.l4_producer.is_none() && self.l4_consumers.is_empty()
    }

    /// The routes that govern callers from `caller_namespace`: their namespace's
    /// consumer routes if it has any, else the producer routes.
    pub fn scope(&self, caller_namespace: &str) -> ScopeRoutes<'_> {
        let (request, connection) = match (self.consumers.get(caller_namespace), self.l4_consumers.get(caller_namespace)) {
            (None, None) => (self.producer.as_ref(), self.l4_producer.as_ref()),
            consumer => consumer,
        };
        match (request, connection) {
            (Some(list), _) => ScopeRoutes::Request(list),
            (None, Some(l4)) => ScopeRoutes::Connection(l4),
            (None, None) => ScopeRoutes::None,
        }
    }

    /// The request-level route list that governs callers from `caller_namespace`, if
    /// any (None also when connection-level routes govern them).
    pub fn for_caller(&self, caller_namespace: &str) -> Option<&Arc<RouteList>> {
        match self.scope(caller_namespace) {
            ScopeRoutes::Request(list) => Some(list),
            ScopeRoutes::None | ScopeRoutes::Connection(_) => None,
        }
    }

    /// The connection-level routes (TLSRoute/TCPRoute) that govern callers from
    /// `caller_namespace`, if those are what governs them.
    pub fn l4_for_caller(&self, caller_namespace: &str) -> Option<&Arc<L4Routes>> {
        match self.scope(caller_namespace) {
            ScopeRoutes::Connection(l4) => Some(l4),
            ScopeRoutes::None | ScopeRoutes::Request(_) => None,
        }
    }

    /// Decides what to do with a request from a caller in `caller_namespace`.
    pub fn decide<'a>(&'a self, caller_namespace: &str, request: &RequestView<'_>) -> Decision<'a> {
        match self.for_caller(caller_namespace) {
            None => Decision::NoRoutes,
            Some(list) => match list.find(request) {
                Some(matched) => Decision::Matched(matched),
                None => Decision::NoMatch,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{RouteKind, RouteMeta, RouteRef, L4Route, BackendSet};

    fn l4(kind: RouteKind, ns: &str) -> Arc<L4Routes> {
        let route = Arc::new(L4Route {
            meta: RouteMeta { route: Arc::new(RouteRef { kind, namespace: ns.into(), name: "r".into() }), created: None },
            index: 0,
            name: None,
            backends: BackendSet::default(),
        });
        Arc::new(L4Routes::tcp(vec![route]))
    }

    fn http() -> Arc<RouteList> {
        Arc::new(RouteList::new(RouteKind::Http, vec![]))
    }

    #[test]
    fn consumer_scope_of_either_level_replaces_the_producer_scope() {
        let mut set = RouteSet { producer: Some(http()), ..Default::default() };
        set.l4_consumers.insert("a".into(), l4(RouteKind::Tcp, "a"));
        assert!(matches!(set.scope("a"), ScopeRoutes::Connection(_)));
        assert!(set.for_caller("a").is_none(), "the producer HTTPRoute does not apply to namespace a");
        assert!(set.l4_for_caller("a").is_some());
        assert!(matches!(set.scope("b"), ScopeRoutes::Request(_)));
        assert!(set.l4_for_caller("b").is_none());

        let mut set = RouteSet { l4_producer: Some(l4(RouteKind::Tcp, "svc")), ..Default::default() };
        set.consumers.insert("a".into(), http());
        assert!(matches!(set.scope("a"), ScopeRoutes::Request(_)));
        assert!(matches!(set.scope("b"), ScopeRoutes::Connection(_)));
        assert!(!set.is_empty());
        assert!(matches!(RouteSet::default().scope("x"), ScopeRoutes::None));
    }

    #[test]
    fn request_level_routes_win_within_one_scope() {
        let set = RouteSet { producer: Some(http()), l4_producer: Some(l4(RouteKind::Tcp, "svc")), ..Default::default() };
        assert!(matches!(set.scope("x"), ScopeRoutes::Request(_)));
        assert!(set.l4_for_caller("x").is_none());
    }
}
