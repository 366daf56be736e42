//! Services as the proxy sees them: a cluster IP port, its protocol and its endpoints.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::RouteSet;

/// A Service, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ServiceRef {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ServiceRef {
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How the bytes on a Service port are to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AppProtocol {
    /// `appProtocol: http` (HTTP/1.1; HTTP/2 with prior knowledge is accepted too).
    Http,
    /// `appProtocol: kubernetes.io/h2c`: HTTP/2 cleartext with prior knowledge.
    H2c,
    /// Any other declared appProtocol: opaque TCP.
    Tcp,
    /// No appProtocol: sniff the first bytes with a short timeout; server-first or
    /// non-HTTP traffic is passed through as TCP.
    Detect,
}

impl AppProtocol {
    /// Maps a Kubernetes `appProtocol` value (None when unset).
    pub fn from_app_protocol(value: Option<&str>) -> Self {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => AppProtocol::Detect,
            Some("http") | Some("kubernetes.io/http") => AppProtocol::Http,
            Some("kubernetes.io/h2c") | Some("h2c") | Some("http2") | Some("grpc") => AppProtocol::H2c,
            Some(_) => AppProtocol::Tcp,
        }
    }
}

/// The ready endpoints of one Service port (already resolved to the target port),
/// chosen round robin.
#[derive(Debug, Default)]
pub struct EndpointSet {
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl EndpointSet {
    pub fn new(mut addrs: Vec<SocketAddr>) -> Self {
        addrs.sort();
        addrs.dedup();
        Self { addrs, next: AtomicUsize::new(0) }
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The next endpoint in round-robin order, or None when there are no ready endpoints.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.addrs.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.addrs[n % self.addrs.len()])
    }
}

/// One port of one Service, with everything needed to serve a connection dialled to it.
#[derive(Debug)]
pub struct ServicePort {
    pub service: ServiceRef,
    pub port: u16,
    /// The port's name, matched by a parentRef's `sectionName`.
    pub port_name: Option<Arc<str>>,
    pub protocol: AppProtocol,
    /// Ready endpoints of this port (used when no routes apply).
    pub endpoints: Arc<EndpointSet>,
    /// The GAMMA routes attached to this port, per caller scope.
    pub routes: RouteSet,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles_through_every_endpoint() {
        let set = EndpointSet::new(vec!["10.0.0.2:80".parse().unwrap(), "10.0.0.1:80".parse().unwrap()]);
        let picks: Vec<_> = (0..4).map(|_| set.pick().unwrap().to_string()).collect();
        assert_eq!(picks, ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80", "10.0.0.2:80"]);
        assert_eq!(EndpointSet::new(vec![]).pick(), None);
    }

    #[test]
    fn app_protocol_mapping() {
        assert_eq!(AppProtocol::from_app_protocol(None), AppProtocol::Detect);
        assert_eq!(AppProtocol::from_app_protocol(Some("http")), AppProtocol::Http);
        assert_eq!(AppProtocol::from_app_protocol(Some("kubernetes.io/h2c")), AppProtocol::H2c);
        assert_eq!(AppProtocol::from_app_protocol(Some("mysql")), AppProtocol::Tcp);
    }
}
