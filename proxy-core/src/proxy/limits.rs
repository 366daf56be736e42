//! Timeouts and resource limits that keep one tenant's connections from holding the
//! node's proxy hostage (slow or silent clients, HTTP/2 abuse, unbounded mirrors).
//! Every default is documented in README.md ("Timeouts and limits").

use std::time::Duration;

/// Per-connection timeouts of the data path.
#[derive(Clone, Debug)]
pub struct ConnectionTimeouts {
    /// HTTP/1: from accepting a connection, or from the first byte of a later request
    /// head, until that head is complete. Exceeded: the connection is closed.
    pub request_head: Duration,
    /// HTTP/1 keep-alive: the longest wait for the next complete request head once a
    /// response is done. HTTP/2: how long a connection may have no open stream.
    pub http_idle: Duration,
    /// TCP passthrough and upgraded (e.g. WebSocket) connections: no byte in either
    /// direction for this long closes both sides.
    pub stream_idle: Duration,
    /// HTTP/2 (both directions): a PING is sent after this long without frames ...
    pub http2_keep_alive_interval: Duration,
    /// ... and the connection is closed when its answer takes longer than this.
    pub http2_keep_alive_timeout: Duration,
}

impl Default for ConnectionTimeouts {
    fn default() -> Self {
        Self {
            request_head: Duration::from_secs(10),
            http_idle: Duration::from_secs(300),
            stream_idle: Duration::from_secs(3600),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(10),
        }
    }
}

/// Limits on downstream HTTP/2 connections (CVE-2023-44487 rapid reset and
/// CONTINUATION floods end in GOAWAY).
#[derive(Clone, Debug)]
pub struct Http2Limits {
    /// Streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Streams reset by the client before the proxy accepted them; more is answered
    /// with GOAWAY (ENHANCE_YOUR_CALM).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the proxy had to reset because the client misbehaved; more is answered
    /// with GOAWAY.
    pub max_local_error_reset_streams: usize,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Self { max_concurrent_streams: 100, max_pending_accept_reset_streams: 20, max_local_error_reset_streams: 1024 }
    }
}

/// Bounds on RequestMirror traffic, for the whole node.
#[derive(Clone, Debug)]
pub struct MirrorLimits {
    /// Mirror requests in flight at once; more are dropped (counted and logged).
    pub max_in_flight: usize,
    /// A mirror request (waiting for the body copy, sending, and its answer's head)
    /// is abandoned after this long.
    pub timeout: Duration,
}

impl Default for MirrorLimits {
    fn default() -> Self {
        Self { max_in_flight: 256, timeout: Duration::from_secs(10) }
    }
}
