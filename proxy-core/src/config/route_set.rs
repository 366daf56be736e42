//! The routes attached to one Service port, by caller scope (GEP-1294).

use std::collections::HashMap;
use std::sync::Arc;

use crate::routes::{MatchedRule, RouteList, RequestView};

/// Producer routes apply to every caller; consumer routes apply only to callers in
/// their own namespace, and for those callers replace the producer routes.
#[derive(Debug, Default)]
pub struct RouteSet {
    /// Routes in the Service's own namespace.
    pub producer: Option<Arc<RouteList>>,
    /// Routes in other namespaces, by the route's (= the caller's) namespace.
    pub consumers: HashMap<Arc<str>, Arc<RouteList>>,
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
        self.producer.is_none() && self.consumers.is_empty()
    }

    /// The route list that governs callers from `caller_namespace`, if any.
    pub fn for_caller(&self, caller_namespace: &str) -> Option<&Arc<RouteList>> {
        self.consumers.get(caller_namespace).or(self.producer.as_ref())
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
