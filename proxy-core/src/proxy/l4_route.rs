//! Connections governed by TLSRoutes or TCPRoutes: choose a route (by the ClientHello's
//! server name for TLSRoutes), a backend by weight and an endpoint, then pass the bytes
//! through unchanged (TLS is never terminated).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::client_hello::{self, Hello, MAX_CLIENT_HELLO};
use super::connection::ConnContext;
use super::{tcp, Proxy};
use crate::routes::L4Routes;

/// How long a client may take to send its whole ClientHello.
pub const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no server name could be read.
#[derive(Debug)]
pub enum PeekError {
    Timeout,
    Closed,
    TooLarge,
    Malformed(client_hello::Malformed),
    Io(std::io::Error),
}

impl std::fmt::Display for PeekError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeekError::Timeout => write!(f, "no complete ClientHello within {CLIENT_HELLO_TIMEOUT:?}"),
            PeekError::Closed => f.write_str("client closed before a complete ClientHello"),
            PeekError::TooLarge => write!(f, "ClientHello larger than {MAX_CLIENT_HELLO} bytes"),
            PeekError::Malformed(m) => m.fmt(f),
            PeekError::Io(e) => e.fmt(f),
        }
    }
}

/// Peeks (without consuming) at the client's first bytes until a whole ClientHello is
/// there; returns its server name, if it has one.
pub async fn peek_server_name(stream: &TcpStream, timeout: Duration) -> Result<Option<String>, PeekError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Records add 5 bytes each; allow a few records' headers on top of the limit.
    let mut buf = vec![0u8; MAX_CLIENT_HELLO + 64];
    let mut last_len = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return Err(PeekError::Timeout),
            Ok(result) => result.map_err(PeekError::Io)?,
        };
        if n == 0 {
            return Err(PeekError::Closed);
        }
        match client_hello::parse(&buf[..n]).map_err(PeekError::Malformed)? {
            Hello::Complete(name) => return Ok(name),
            Hello::Incomplete if n == buf.len() => return Err(PeekError::TooLarge),
            Hello::Incomplete => {}
        }
        if n == last_len {
            // peek returns at once while the data is unchanged: wait for more.
            if tokio::time::Instant::now() >= deadline {
                return Err(PeekError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        last_len = n;
    }
}

/// Routes one connection by `routes` and passes it through; resets it when no route,
/// backend or endpoint applies.
pub async fn serve(proxy: &Proxy, ctx: &ConnContext, stream: TcpStream, routes: Arc<L4Routes>) {
    let server_name = if routes.needs_server_name() {
        match peek_server_name(&stream, CLIENT_HELLO_TIMEOUT).await {
            Ok(Some(name)) => Some(name),
            Ok(None) => {
                tracing::info!(service = %ctx.service_label(), "TLSRoute: ClientHello without a server name; resetting");
                tcp::reset(stream);
                return;
            }
            Err(error) => {
                tracing::info!(service = %ctx.service_label(), %error, "TLSRoute: resetting");
                tcp::reset(stream);
                return;
            }
        }
    } else {
        None
    };
    let Some(route) = routes.select(server_name.as_deref()) else {
        tracing::info!(
            service = %ctx.service_label(),
            server_name = server_name.as_deref().unwrap_or(""),
            "no {} matches the connection; resetting",
            routes.kind()
        );
        tcp::reset(stream);
        return;
    };
    let Some(backend) = route.backends.pick() else {
        tracing::info!(route = %route.route(), "route has no backend with a weight; resetting");
        tcp::reset(stream);
        return;
    };
    tracing::debug!(
        route = %route.route(),
        rule = route.index,
        server_name = server_name.as_deref().unwrap_or(""),
        "connection routed"
    );
    tcp::passthrough(proxy, ctx, stream, backend.target.pick_endpoint()).await;
}
