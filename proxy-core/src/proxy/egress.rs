//! Where upstream connections come from. A [`SocketFactory`] makes the socket that a
//! connection to a backend uses on behalf of one caller. The agent's factory creates it
//! in the caller pod's network namespace, so that backends (and NetworkPolicy) see the
//! caller's own address; the default, [`NodeSockets`], creates it in the proxy's.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::net::TcpSocket;

use crate::identity::CgroupId;

/// Whose address an upstream connection carries. Pooled upstream connections are
/// shared only between requests with the same source, so one caller's connection is
/// never used for another caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The proxy's own network namespace and address, shared by every caller.
    Node,
    /// The network namespace of the caller pod with this pod cgroup.
    Pod(CgroupId),
}

/// A socket on its way (it may be created on another thread).
pub type SocketFuture = Pin<Box<dyn Future<Output = io::Result<TcpSocket>> + Send>>;

/// Makes upstream sockets for callers.
pub trait SocketFactory: Send + Sync + 'static {
    /// The source of a caller's upstream connections. Called once per accepted
    /// connection; must be cheap.
    fn source(&self, caller: CgroupId) -> Source;

    /// A new, unconnected, non-blocking TCP socket from `source`, of `endpoint`'s
    /// address family. An error means no connection may be made for that source
    /// (the proxy answers 503, or resets a TCP connection).
    fn socket(&self, source: Source, endpoint: SocketAddr) -> SocketFuture;
}

/// The default factory: every upstream socket in the proxy's own network namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeSockets;

impl SocketFactory for NodeSockets {
    fn source(&self, _caller: CgroupId) -> Source {
        Source::Node
    }

    fn socket(&self, _source: Source, endpoint: SocketAddr) -> SocketFuture {
        Box::pin(std::future::ready(node_socket(endpoint)))
    }
}

/// A TCP socket in the current thread's network namespace for connecting to `endpoint`.
pub fn node_socket(endpoint: SocketAddr) -> io::Result<TcpSocket> {
    match endpoint {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
}
