//! Connections to backend endpoints: pooled HTTP/1.1 keep-alive connections and
//! shared, multiplexed HTTP/2 connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    http2_keep_alive_interval: Duration,
    http2_keep_alive_timeout: Duration,
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
            http2_keep_alive_interval: options.timeouts.http2_keep_alive_interval,
            http2_keep_alive_timeout: options.timeouts.http2_keep_alive_timeout,
        }
    }

    /// Starts closing idle and dead pooled connections periodically (every half idle
    /// timeout, between 1 and 30 s), until the pools are dropped. Outside a Tokio
    /// runtime there is no reaper (connections are then only checked when reused).
    pub fn start_reaper(this: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime: upstream pools are not reaped");
            return;
        };
        let every = (this.idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let pools = Arc::downgrade(this);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(pools) = pools.upgrade() else { return };
                pools.reap();
            }
        });
    }

    /// Closes idle HTTP/1.1 connections past the idle timeout (dropping the sender ends
    /// the connection), forgets closed ones and closed HTTP/2 connections, and removes
    /// endpoints left without connections.
    fn reap(&self) {
        let (mut closed, mut endpoints) = (0, 0);
        {
            let mut map = self.http1.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, pool| {
                let before = pool.len();
                pool.retain(|idle| idle.since.elapsed() < self.idle_timeout && !idle.sender.is_closed());
                closed += before - pool.len();
                endpoints += usize::from(pool.is_empty());
                !pool.is_empty()
            });
        }
        {
            let mut map = self.http2.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|_, sender| !sender.is_closed());
            closed += before - map.len();
        }
        if closed > 0 || endpoints > 0 {
            tracing::debug!(closed, endpoints, "reaped upstream pools");
        }
    }

    /// Endpoints with pooled connections (HTTP/1.1 idle, HTTP/2 shared).
    #[cfg(test)]
    fn pooled_endpoints(&self) -> (usize, usize) {
        let http1 = self.http1.lock().unwrap_or_else(|p| p.into_inner()).len();
        let http2 = self.http2.lock().unwrap_or_else(|p| p.into_inner()).len();
        (http1, http2)
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
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_keep_alive_interval)
            .keep_alive_timeout(self.http2_keep_alive_timeout)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::body;
    use hyper_util::server::conn::auto;
    use tokio::net::TcpListener;

    /// A backend that answers every request with 200 and reports each closed connection
    /// (it closes each connection itself after `lifetime`, if given).
    async fn backend(lifetime: Option<Duration>) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(body::empty()))
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let serve = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(lifetime.unwrap_or(Duration::MAX), serve).await;
                    let _ = closed_tx.send(());
                });
            }
        });
        (addr, closed)
    }

    #[tokio::test]
    async fn the_reaper_closes_idle_connections_and_forgets_their_endpoints() {
        let (addr, mut closed) = backend(None).await;
        let options = ProxyOptions { idle_timeout: Duration::from_millis(300), ..ProxyOptions::default() };
        let pools = Arc::new(Upstreams::new(&options, Arc::new(crate::proxy::NodeSockets)));
        Upstreams::start_reaper(&pools);
        let request = Request::get("/").body(body::empty()).unwrap();
        let response = pools.send(Source::Node, addr, UpstreamVersion::Http1, request).await.unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while pools.pooled_endpoints() != (1, 0) {
            assert!(tokio::time::Instant::now() < deadline, "connection never pooled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Nobody uses the endpoint again: the reaper alone must close the connection.
        tokio::time::timeout(Duration::from_secs(5), closed.recv()).await.expect("idle connection not closed").unwrap();
        assert_eq!(pools.pooled_endpoints(), (0, 0));
    }

    #[tokio::test]
    async fn closed_http2_connections_are_forgotten() {
        let (addr, mut closed) = backend(Some(Duration::from_millis(300))).await;
        let options = ProxyOptions { idle_timeout: Duration::from_millis(300), ..ProxyOptions::default() };
        let pools = Arc::new(Upstreams::new(&options, Arc::new(crate::proxy::NodeSockets)));
        Upstreams::start_reaper(&pools);
        let request = Request::get("http://svc/").body(body::empty()).unwrap();
        pools.send(Source::Node, addr, UpstreamVersion::Http2, request).await.unwrap();
        assert_eq!(pools.pooled_endpoints(), (0, 1));
        tokio::time::timeout(Duration::from_secs(5), closed.recv()).await.expect("backend never closed").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while pools.pooled_endpoints() != (0, 0) {
            assert!(tokio::time::Instant::now() < deadline, "closed HTTP/2 connection still pooled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
