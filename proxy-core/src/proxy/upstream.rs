//! Connections to backend endpoints: pooled HTTP/1.1 keep-alive connections and
//! shared, multiplexed HTTP/2 connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::body::Body;
use super::egress::{SocketFactory, Source};
use super::ProxyOptions;

/// Which HTTP version to speak to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamVersion {
    Http1,
    Http2,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("no socket for a connection to {0}: {1}")]
    Socket(SocketAddr, std::io::Error),
    #[error("connect to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("HTTP handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
    #[error("request to {0} failed: {1}")]
    Request(SocketAddr, hyper::Error),
}

impl UpstreamError {
    /// True when the request never reached the backend.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(..) | UpstreamError::Socket(..) | UpstreamError::ConnectTimeout(..) | UpstreamError::Handshake(..))
    }
}

struct IdleHttp1 {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// A pool key: connections are shared only between requests with the same source
/// (caller) and endpoint.
type PoolKey = (Source, SocketAddr);

/// Upstream connection pools, keyed by source and endpoint address.
pub struct Upstreams {
    http1: Mutex<HashMap<PoolKey, Vec<IdleHttp1>>>,
    http2: Mutex<HashMap<PoolKey, http2::SendRequest<Body>>>,
    sockets: Arc<dyn SocketFactory>,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Upstreams {
    pub fn new(options: &ProxyOptions, sockets: Arc<dyn SocketFactory>) -> Self {
        Self {
            http1: Mutex::default(),
            http2: Mutex::default(),
            sockets,
            connect_timeout: options.connect_timeout,
            max_idle: options.max_idle_per_endpoint,
            idle_timeout: options.idle_timeout,
        }
    }

    /// The source of a caller's upstream connections.
    pub fn source(&self, caller: crate::identity::CgroupId) -> Source {
        self.sockets.source(caller)
    }

    /// Connects to `endpoint` from `source` (socket creation counts in the timeout).
    pub async fn connect(&self, source: Source, endpoint: SocketAddr) -> Result<TcpStream, UpstreamError> {
        let attempt = async {
            let socket = self.sockets.socket(source, endpoint).await.map_err(|e| UpstreamError::Socket(endpoint, e))?;
            socket.connect(endpoint).await.map_err(|e| UpstreamError::Connect(endpoint, e))
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Err(_) => Err(UpstreamError::ConnectTimeout(endpoint)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
        }
    }

    /// Sends a request to `endpoint`. The request URI must already be in the form the
    /// version needs (origin-form for HTTP/1.1, absolute-form for HTTP/2).
    pub async fn send(
        self: &std::sync::Arc<Self>,
        source: Source,
        endpoint: SocketAddr,
        version: UpstreamVersion,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let key = (source, endpoint);
        match version {
            UpstreamVersion::Http1 => self.send_http1(key, request).await,
            UpstreamVersion::Http2 => self.send_http2(key, request).await,
        }
    }

    fn take_idle_http1(&self, key: PoolKey) -> Option<http1::SendRequest<Body>> {
        let mut pools = self.http1.lock().unwrap_or_else(|p| p.into_inner());
        let pool = pools.get_mut(&key)?;
        while let Some(idle) = pool.pop() {
            if idle.since.elapsed() < self.idle_timeout && idle.sender.is_ready() {
                return Some(idle.sender);
            }
        }
        None
    }

    async fn new_http1(&self, (source, endpoint): PoolKey) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let stream = self.connect(source, endpoint).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Handshake(endpoint, e))?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%endpoint, %error, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(sender)
    }

    async fn send_http1(
        self: &std::sync::Arc<Self>,
        key: PoolKey,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let endpoint = key.1;
        let mut request = request;
        // A pooled connection may have been closed by the backend in the meantime; hyper
        // hands the request back when it was not sent, and we retry on a new connection.
        if let Some(mut sender) = self.take_idle_http1(key) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.recycle_http1(key, sender);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(UpstreamError::Request(endpoint, e.into_error())),
                },
            }
        }
        let mut sender = self.new_http1(key).await?;
        let response = sender.send_request(request).await.map_err(|e| UpstreamError::Request(endpoint, e))?;
        self.recycle_http1(key, sender);
        Ok(response)
    }

    /// Returns the connection to the pool once the response has been read.
    fn recycle_http1(self: &std::sync::Arc<Self>, key: PoolKey, mut sender: http1::SendRequest<Body>) {
        let pools = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let mut map = pools.http1.lock().unwrap_or_else(|p| p.into_inner());
            let pool = map.entry(key).or_default();
            pool.retain(|idle| idle.since.elapsed() < pools.idle_timeout && !idle.sender.is_closed());
            if pool.len() < pools.max_idle {
                pool.push(IdleHttp1 { sender, since: Instant::now() });
            }
        });
    }

    async fn http2_sender(&self, key: PoolKey) -> Result<http2::SendRequest<Body>, UpstreamError> {
        let (source, endpoint) = key;
        {
            let mut map = self.http2.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(sender) = map.get(&key) {
                if !sender.is_closed() {
                    return Ok(sender.clone());
                }
                map.remove(&key);
            }
        }
        let stream = self.connect(source, endpoint).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Handshake(endpoint, e))?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%endpoint, %error, "upstream HTTP/2 connection ended");
            }
        });
        self.http2.lock().unwrap_or_else(|p| p.into_inner()).insert(key, sender.clone());
        Ok(sender)
    }

    async fn send_http2(&self, key: PoolKey, request: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        let endpoint = key.1;
        let mut sender = self.http2_sender(key).await?;
        sender.ready().await.map_err(|e| UpstreamError::Request(endpoint, e))?;
        sender.send_request(request).await.map_err(|e| UpstreamError::Request(endpoint, e))
    }

    /// A dedicated HTTP/1.1 connection that supports protocol upgrades (not pooled).
    pub async fn send_upgrade(
        &self,
        source: Source,
        endpoint: SocketAddr,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let stream = self.connect(source, endpoint).await?;
        let (mut sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Handshake(endpoint, e))?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%endpoint, %error, "upstream upgraded connection ended");
            }
        });
        sender.send_request(request).await.map_err(|e| UpstreamError::Request(endpoint, e))
    }
}
