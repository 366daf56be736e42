//! Why an outbound tunnel could not be opened.

use std::net::SocketAddr;

use crate::identity::SpiffeId;
use crate::tls::{NoCertificate, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The caller's identity has no certificate on this node: the call fails closed.
    #[error(transparent)]
    NoCertificate(#[from] NoCertificate),
    /// The expected identity cannot be named in SNI (a name over DNS limits).
    #[error("{0} cannot be named as a TLS server name")]
    ServerName(SpiffeId),
    #[error("no socket for a tunnel to {0}: {1}")]
    Socket(SocketAddr, std::io::Error),
    #[error("connect to the HBONE address {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("tunnel to {0} not established within the connect timeout")]
    Timeout(SocketAddr),
    /// The TLS handshake failed or the server is not who it must be (secure naming).
    #[error("TLS with {node} refused: {reason}")]
    Refused { node: SocketAddr, reason: Refusal },
    #[error("HTTP/2 with {0} failed: {1}")]
    Http2(SocketAddr, h2::Error),
    /// The inbound side answered the CONNECT with another status than 200.
    #[error("the HBONE peer {0} answered {1}")]
    Status(SocketAddr, http::StatusCode),
}

impl TunnelError {
    /// True when a fresh connection might succeed where a pooled one failed.
    pub(crate) fn is_stale_connection(&self) -> bool {
        matches!(self, TunnelError::Http2(..))
    }
}
