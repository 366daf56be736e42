//! TLSRoute and TCPRoute compiled for the data path: chosen once per connection, the
//! connection then passed through unchanged to an endpoint of the chosen backend.

use std::cmp::{Ordering, Reverse};
use std::fmt;
use std::sync::Arc;

use super::{BackendSet, RouteKind, RouteMeta};

/// A TLSRoute `hostnames` entry, matched against the ClientHello's server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostnameMatch {
    /// `foo.example`: exactly this name (ASCII case-insensitive).
    Exact(Arc<str>),
    /// `*.example`: any name with at least one more label in front of `.example`
    /// (held here as the suffix `.example`, lowercase).
    Wildcard(Arc<str>),
}

/// Why a `hostnames` entry is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidHostname(pub String);

impl fmt::Display for InvalidHostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl HostnameMatch {
    /// Parses a Gateway API hostname: DNS labels, optionally with a leading `*.`; IP
    /// addresses are not hostnames.
    pub fn parse(value: &str) -> Result<Self, InvalidHostname> {
        let bad = |why: &str| InvalidHostname(format!("hostname {value:?} {why}"));
        let lower = value.to_ascii_lowercase();
        let (wildcard, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if rest.is_empty() || lower.len() > 253 {
            return Err(bad("is empty or longer than 253 characters"));
        }
        for label in rest.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(bad("is not a DNS name (labels of letters, digits and '-', optionally after '*.')"));
            }
        }
        if rest.parse::<std::net::IpAddr>().is_ok() || rest.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad("is an IP address, not a hostname"));
        }
        Ok(if wildcard {
            HostnameMatch::Wildcard(format!(".{rest}").into())
        } else {
            HostnameMatch::Exact(rest.into())
        })
    }

    /// Whether `server_name` (from the ClientHello) matches.
    pub fn matches(&self, server_name: &str) -> bool {
        match self {
            HostnameMatch::Exact(name) => server_name.eq_ignore_ascii_case(name),
            HostnameMatch::Wildcard(suffix) => {
                server_name.len() > suffix.len()
                    && server_name.is_char_boundary(server_name.len() - suffix.len())
                    && server_name[server_name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// Greater is more specific: any exact name, then wildcards by suffix length.
    fn specificity(&self) -> (bool, usize) {
        match self {
            HostnameMatch::Exact(name) => (true, name.len()),
            HostnameMatch::Wildcard(suffix) => (false, suffix.len()),
        }
    }
}

impl fmt::Display for HostnameMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostnameMatch::Exact(name) => f.write_str(name),
            HostnameMatch::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// One TLSRoute or TCPRoute, reduced to the rule that carries its traffic (Ambit uses
/// a route's first rule; the translation reports any further rule as dropped).
#[derive(Clone, Debug)]
pub struct L4Route {
    pub meta: RouteMeta,
    /// Position of the rule within its route.
    pub index: usize,
    /// GEP-995 rule name, when set.
    pub name: Option<Arc<str>>,
    /// The rule's weighted backendRefs (empty: connections are reset).
    pub backends: BackendSet,
}

impl L4Route {
    pub fn route(&self) -> &super::RouteRef {
        &self.meta.route
    }
}

/// A TLSRoute: its hostnames (empty: every server name) and its rule.
#[derive(Clone, Debug)]
pub struct TlsRoute {
    pub hostnames: Vec<HostnameMatch>,
    pub route: Arc<L4Route>,
}

/// The connection-level routes of one Service port and caller scope. One kind only:
/// the translation keeps TLSRoutes over TCPRoutes (and HTTP/GRPC routes over both).
#[derive(Debug)]
pub enum L4Routes {
    /// TCPRoutes in precedence order (oldest, then `namespace/name`); the first one
    /// carries every connection.
    Tcp(Vec<Arc<L4Route>>),
    /// TLSRoutes: a connection goes to the route whose hostname matches the
    /// ClientHello's server name most specifically (exact, then the longest wildcard,
    /// then routes without hostnames); ties go to the route first in precedence.
    Tls(TlsTable),
}

/// TLSRoutes of one scope, indexed for server-name lookup.
#[derive(Debug)]
pub struct TlsTable {
    /// Routes in precedence order (for display).
    routes: Vec<TlsRoute>,
    /// (hostname or any, route), most specific first.
    entries: Vec<(Option<HostnameMatch>, Arc<L4Route>)>,
}

/// Route-level precedence: oldest first (unknown creation time last), then
/// `namespace/name`.
fn route_order(a: &L4Route, b: &L4Route) -> Ordering {
    let key = |r: &L4Route| (r.meta.created.is_none(), r.meta.created);
    key(a)
        .cmp(&key(b))
        .then_with(|| (&*a.meta.route.namespace, &*a.meta.route.name).cmp(&(&*b.meta.route.namespace, &*b.meta.route.name)))
        .then_with(|| a.index.cmp(&b.index))
}

impl L4Routes {
    /// TCPRoutes of one scope (any order).
    pub fn tcp(mut routes: Vec<Arc<L4Route>>) -> Self {
        routes.sort_by(|a, b| route_order(a, b));
        L4Routes::Tcp(routes)
    }

    /// TLSRoutes of one scope (any order).
    pub fn tls(mut routes: Vec<TlsRoute>) -> Self {
        routes.sort_by(|a, b| route_order(&a.route, &b.route));
        let mut entries: Vec<(Option<HostnameMatch>, Arc<L4Route>)> = Vec::new();
        for r in &routes {
            if r.hostnames.is_empty() {
                entries.push((None, r.route.clone()));
            }
            for h in &r.hostnames {
                entries.push((Some(h.clone()), r.route.clone()));
            }
        }
        // Stable: equal specificity keeps route precedence.
        entries.sort_by_key(|(h, _)| Reverse(h.as_ref().map(HostnameMatch::specificity)));
        L4Routes::Tls(TlsTable { routes, entries })
    }

    pub fn kind(&self) -> RouteKind {
        match self {
            L4Routes::Tcp(_) => RouteKind::Tcp,
            L4Routes::Tls(_) => RouteKind::Tls,
        }
    }

    /// Whether choosing a route needs the ClientHello's server name.
    pub fn needs_server_name(&self) -> bool {
        matches!(self, L4Routes::Tls(_))
    }

    /// The route for a connection: for TLSRoutes by `server_name` (None, or no match:
    /// no route, and the connection is reset); for TCPRoutes the first route.
    pub fn select(&self, server_name: Option<&str>) -> Option<&Arc<L4Route>> {
        match self {
            L4Routes::Tcp(routes) => routes.first(),
            L4Routes::Tls(table) => {
                let name = server_name?;
                table.entries.iter().find(|(h, _)| h.as_ref().is_none_or(|h| h.matches(name))).map(|(_, r)| r)
            }
        }
    }

    /// Every route, in precedence order, with its hostnames (empty for TCPRoutes).
    pub fn routes(&self) -> Vec<(&[HostnameMatch], &Arc<L4Route>)> {
        match self {
            L4Routes::Tcp(routes) => routes.iter().map(|r| (&[][..], r)).collect(),
            L4Routes::Tls(table) => table.routes.iter().map(|r| (&r.hostnames[..], &r.route)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteRef;

    fn route(kind: RouteKind, name: &str, created: Option<i64>) -> Arc<L4Route> {
        Arc::new(L4Route {
            meta: RouteMeta {
                route: Arc::new(RouteRef { kind, namespace: "ns".into(), name: name.into() }),
                created,
            },
            index: 0,
            name: None,
            backends: BackendSet::default(),
        })
    }

    fn h(s: &str) -> HostnameMatch {
        HostnameMatch::parse(s).unwrap()
    }

    fn tls(routes: &[(&str, &[&str])]) -> L4Routes {
        L4Routes::tls(
            routes
                .iter()
                .map(|(name, hosts)| TlsRoute {
                    hostnames: hosts.iter().map(|s| h(s)).collect(),
                    route: route(RouteKind::Tls, name, Some(0)),
                })
                .collect(),
        )
    }

    fn chosen(routes: &L4Routes, sni: Option<&str>) -> Option<String> {
        routes.select(sni).map(|r| r.meta.route.name.to_string())
    }

    #[test]
    fn hostname_parsing() {
        assert_eq!(h("Foo.Example"), HostnameMatch::Exact("foo.example".into()));
        assert_eq!(h("*.example"), HostnameMatch::Wildcard(".example".into()));
        assert_eq!(h("*.example").to_string(), "*.example");
        for bad in ["", "*.", "*", "a..b", "-a.b", "a-.b", "a_b.c", "*.*.a", "a.*.b", "10.0.0.1", "::1", "x/y", &"a".repeat(64)] {
            assert!(HostnameMatch::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hostname_matching() {
        assert!(h("v2.example").matches("V2.EXAMPLE"));
        assert!(!h("v2.example").matches("x.v2.example"));
        assert!(h("*.example").matches("a.example"));
        assert!(h("*.example").matches("a.b.example"));
        assert!(!h("*.example").matches("example"));
        assert!(!h("*.example").matches(".example"), "the wildcard needs a label");
        assert!(!h("*.example").matches("aexample"));
        assert!(!h("*.example").matches("é.example.x"));
        // A multi-byte character right at the boundary must not panic.
        assert!(!h("*.ab").matches("xéé"));
        assert!(h("*.ab").matches("é.ab"));
    }

    #[test]
    fn tls_most_specific_hostname_wins_then_precedence() {
        let routes = tls(&[("wild", &["*.example"]), ("exact", &["v2.example"]), ("any", &[]), ("deeper", &["*.a.example"])]);
        assert_eq!(chosen(&routes, Some("v2.example")).as_deref(), Some("exact"));
        assert_eq!(chosen(&routes, Some("v1.example")).as_deref(), Some("wild"));
        assert_eq!(chosen(&routes, Some("x.a.example")).as_deref(), Some("deeper"));
        assert_eq!(chosen(&routes, Some("other.test")).as_deref(), Some("any"));
        assert_eq!(chosen(&routes, None), None, "no SNI: no route");
        let strict = tls(&[("wild", &["*.example"])]);
        assert_eq!(chosen(&strict, Some("other.test")), None);
        assert!(strict.needs_server_name());
        assert_eq!(strict.kind(), RouteKind::Tls);
    }

    #[test]
    fn tls_equal_hostnames_go_to_the_older_route_then_by_name() {
        let a = TlsRoute { hostnames: vec![h("x.example")], route: route(RouteKind::Tls, "b-newer", Some(10)) };
        let b = TlsRoute { hostnames: vec![h("x.example")], route: route(RouteKind::Tls, "z-older", Some(1)) };
        let c = TlsRoute { hostnames: vec![h("x.example")], route: route(RouteKind::Tls, "a-unknown", None) };
        let routes = L4Routes::tls(vec![a.clone(), c.clone(), b.clone()]);
        assert_eq!(chosen(&routes, Some("x.example")).as_deref(), Some("z-older"));
        let same_age = L4Routes::tls(vec![
            TlsRoute { hostnames: vec![h("x.example")], route: route(RouteKind::Tls, "b", Some(1)) },
            TlsRoute { hostnames: vec![h("x.example")], route: route(RouteKind::Tls, "a", Some(1)) },
        ]);
        assert_eq!(chosen(&same_age, Some("x.example")).as_deref(), Some("a"));
    }

    #[test]
    fn tcp_first_route_by_precedence_carries_every_connection() {
        let routes = L4Routes::tcp(vec![
            route(RouteKind::Tcp, "b", Some(5)),
            route(RouteKind::Tcp, "a", None),
            route(RouteKind::Tcp, "c", Some(5)),
        ]);
        assert_eq!(chosen(&routes, None).as_deref(), Some("b"));
        assert_eq!(chosen(&routes, Some("anything")).as_deref(), Some("b"));
        assert!(!routes.needs_server_name());
        let names: Vec<_> = routes.routes().iter().map(|(_, r)| r.meta.route.name.to_string()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        assert!(L4Routes::tcp(vec![]).select(None).is_none());
    }
}
