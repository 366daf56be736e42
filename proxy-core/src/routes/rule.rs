//! A compiled route rule and the route it came from.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{BackendSet, CorsPolicy, HeaderModifier, Mirror, Redirect, RetryPolicy, RouteMatch, UrlRewrite};

/// The kind of a route resource. HTTPRoute and GRPCRoute rules are evaluated per
/// request ([`RouteList`](super::RouteList)); TLSRoute and TCPRoute per connection
/// ([`L4Routes`](super::L4Routes)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum RouteKind {
    #[serde(rename = "HTTPRoute")]
    Http,
    #[serde(rename = "GRPCRoute")]
    Grpc,
    #[serde(rename = "TLSRoute")]
    Tls,
    #[serde(rename = "TCPRoute")]
    Tcp,
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Tcp => "TCPRoute",
        })
    }
}

/// Which route resource a rule belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RouteRef {
    pub kind: RouteKind,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl fmt::Display for RouteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The route-level facts that break precedence ties: oldest first, then
/// `namespace/name` alphabetically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMeta {
    pub route: Arc<RouteRef>,
    /// creationTimestamp as seconds since the Unix epoch (None sorts last).
    pub created: Option<i64>,
}

/// GEP-1742 timeouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Whole request, from the proxy receiving it to the response being complete: 504.
    pub request: Option<Duration>,
    /// Each attempt to the backend: 504.
    pub backend_request: Option<Duration>,
}

/// Filters that apply to every request the rule handles.
#[derive(Clone, Debug, Default)]
pub struct RuleFilters {
    pub request_headers: Option<HeaderModifier>,
    pub response_headers: Option<HeaderModifier>,
    pub mirrors: Vec<Mirror>,
    /// GEP-1767 CORS: preflights answered by the proxy, CORS headers on responses.
    pub cors: Option<CorsPolicy>,
}

/// A rule forwards to backends, or answers with a redirect itself; never both
/// (the spec forbids RequestRedirect together with URLRewrite or backends).
#[derive(Clone, Debug)]
pub enum RuleAction {
    Redirect(Redirect),
    Forward(Forward),
}

#[derive(Clone, Debug)]
pub struct Forward {
    pub rewrite: Option<UrlRewrite>,
    /// Empty when the rule names no backendRefs: the request then gets 500.
    pub backends: BackendSet,
}

/// One compiled route rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub meta: RouteMeta,
    /// Position of the rule within its route.
    pub index: usize,
    /// GEP-995 rule name, when set.
    pub name: Option<Arc<str>>,
    /// The rule's matches; empty means one match-everything match.
    pub matches: Vec<RouteMatch>,
    pub filters: RuleFilters,
    pub action: RuleAction,
    pub timeouts: Timeouts,
    /// GEP-1731 retries (None: every request gets one attempt).
    pub retry: Option<RetryPolicy>,
}

impl Rule {
    pub fn route(&self) -> &RouteRef {
        &self.meta.route
    }
}
