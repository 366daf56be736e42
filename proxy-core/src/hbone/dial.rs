//! Establishing one outbound HBONE connection: TCP from the caller's source, mutual TLS
//! 1.3 presenting the caller's identity, secure naming, then the HTTP/2 handshake.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::classify::refusal_of;
use super::coalesce::Coalesce;
use super::error::TunnelError;
use super::keepalive::Keepalive;
use super::pool::{PoolOptions, TunnelKey};
use super::transport;
use crate::proxy::SocketFactory;
use crate::identity::SpiffeId;
use crate::tls::{self, MeshTls, NoCertificate, Refusal};
use rustls::ClientConfig;

/// HTTP/2 windows of tunnels: large enough for bulk TCP over one stream.
pub(crate) const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
pub(crate) const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
pub(crate) const MAX_FRAME: u32 = 256 * 1024;

/// A live HTTP/2 connection to a peer node and what the pool tracks about it.
#[derive(Debug)]
pub(crate) struct Dialled {
    pub sender: SendRequest<Bytes>,
    /// Streams the server allows at once (updated as its SETTINGS arrive).
    pub limit: Arc<AtomicUsize>,
    /// Set when the connection has ended.
    pub closed: Arc<AtomicBool>,
    /// Cancelling closes the connection.
    pub shutdown: CancellationToken,
}

pub(crate) async fn dial(
    tls: &dyn MeshTls,
    sockets: &dyn SocketFactory,
    key: &TunnelKey,
    options: &PoolOptions,
) -> Result<Dialled, TunnelError> {
    let (connect_timeout, max_streams) = (options.connect_timeout, options.max_streams_per_connection);
    let config = client_config(tls, &key.identity, connect_timeout).await?;
    let name = tls::server_name(&key.expected).ok_or_else(|| TunnelError::ServerName(key.expected.clone()))?;
    let node = key.node;
    let attempt = async {
        let socket = sockets.socket(key.source, node).await.map_err(|e| TunnelError::Socket(node, e))?;
        let tcp = socket.connect(node).await.map_err(|e| TunnelError::Connect(node, e))?;
        let _ = tcp.set_nodelay(true);
        let stream = TlsConnector::from(config)
            .connect(name, transport::buffered(tcp))
            .await
            .map_err(|e| TunnelError::Refused { node, reason: refusal_of(&e) })?;
        let presented = tls::peer_identity(stream.get_ref().1).map_err(|reason| TunnelError::Refused { node, reason })?;
        if presented != key.expected {
            tracing::debug!(%node, expected = %key.expected, %presented, "secure naming: wrong server identity");
            return Err(TunnelError::Refused { node, reason: Refusal::WrongIdentity });
        }
        h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .initial_max_send_streams(max_streams as usize)
            .max_send_buffer_size(STREAM_WINDOW as usize)
            .enable_push(false)
            .handshake::<_, Bytes>(Coalesce::new(stream))
            .await
            .map_err(|e| TunnelError::Http2(node, e))
    };
    let (sender, connection) = match tokio::time::timeout(connect_timeout, attempt).await {
        Err(_) => return Err(TunnelError::Timeout(node)),
        Ok(result) => result?,
    };
    let limit = Arc::new(AtomicUsize::new(max_streams as usize));
    let closed = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let keepalive = Keepalive { interval: options.keepalive_interval, timeout: options.keepalive_timeout };
    tokio::spawn(drive(connection, node, limit.clone(), closed.clone(), shutdown.clone(), max_streams as usize, keepalive));
    Ok(Dialled { sender, limit, closed, shutdown })
}

/// The caller's client configuration, waiting (at most `wait`) for a certificate that is
/// still being obtained.
async fn client_config(tls: &dyn MeshTls, identity: &SpiffeId, wait: Duration) -> Result<Arc<ClientConfig>, NoCertificate> {
    if let Ok(config) = tls.client_config(identity) {
        return Ok(config);
    }
    let _ = tokio::time::timeout(wait, tls.obtained(identity)).await;
    tls.client_config(identity)
}

/// Runs the connection until it ends, is shut down or its peer stops answering PINGs;
/// keeps `limit` at the server's current max-concurrent-streams (capped at ours).
async fn drive<T>(
    mut connection: h2::client::Connection<T, Bytes>,
    node: std::net::SocketAddr,
    limit: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    shutdown: CancellationToken,
    ours: usize,
    keepalive: Keepalive,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let ping_pong = connection.ping_pong();
    let run = std::future::poll_fn(|cx| {
        let polled = std::pin::Pin::new(&mut connection).poll(cx);
        limit.store(connection.max_concurrent_send_streams().min(ours), Ordering::Relaxed);
        polled
    });
    tokio::select! {
        result = run => if let Err(error) = result {
            tracing::debug!(%node, %error, "HBONE connection ended");
        },
        _ = shutdown.cancelled() => {}
        _ = keepalive.failed(ping_pong) => {
            tracing::debug!(%node, "HBONE peer did not answer a PING; closing the connection");
        }
    }
    closed.store(true, Ordering::Release);
}
