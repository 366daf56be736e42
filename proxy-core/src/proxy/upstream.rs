//! Connections to backend endpoints: pooled HTTP/1.1 keep-alive connections and
//! shared, multiplexed HTTP/2 connections, each pool kept per data-path thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::{self, Body};
use super::caller::{Caller, CallerKey};
use super::http1_pool::{Http1Pool, Recycled};
use super::http2_pool::Http2Pool;
use super::egress::{SocketFactory, Source};
use super::mesh_path::MeshPath;
use super::upstream_stream::UpstreamStream;
use super::ProxyOptions;
use crate::config::ConfigHandle;
use crate::metrics::UpstreamConnects;
use crate::hbone::{stream_labels, Denial, HbonePool, InboundGate, StreamClaim, Tunnel, TunnelError, TunnelKey};

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
    /// A mesh pod on another node could not be reached through a tunnel.
    #[error("HBONE tunnel to {0}: {1}")]
    Tunnel(SocketAddr, TunnelError),
    /// A mesh pod on this node refused the caller (inbound gate).
    #[error("mesh pod {0} refused the caller: {1}")]
    Denied(SocketAddr, Box<Denial>),
    /// A mesh pod, but the caller has no identity or the proxy no mesh TLS: never
    /// plaintext to a mesh pod.
    #[error("{0} is a mesh pod and the caller has no mesh identity")]
    NoIdentity(SocketAddr),
    /// A same-node pod with HTTP rules, and a request path that cannot be normalised.
    #[error("the request path to {0} cannot be normalised for its HTTP authorization rules")]
    InvalidPath(SocketAddr),
}

impl UpstreamError {
    /// True when the callee's AuthorizationPolicies refused the caller (same node: the
    /// gate's decision; another node: 403 on the CONNECT): HTTP callers get 403.
    pub fn is_forbidden(&self) -> bool {
        match self {
            UpstreamError::Denied(_, denial) => matches!(**denial, Denial::Authorization(_) | Denial::Policy(_)),
            UpstreamError::Tunnel(_, TunnelError::Status(_, status)) => *status == http::StatusCode::FORBIDDEN,
            _ => false,
        }
    }

    /// True when a same-node pod's HTTP rules could not be checked: the path does not
    /// normalise (the caller gets 400).
    pub fn is_invalid_path(&self) -> bool {
        matches!(self, UpstreamError::InvalidPath(_))
    }

    /// True when the request never reached the backend.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(..) | UpstreamError::Socket(..) | UpstreamError::ConnectTimeout(..) | UpstreamError::Handshake(..))
            || self.is_mesh_refusal()
            || matches!(self, UpstreamError::Tunnel(..))
    }

    /// True when the mesh refused the call before any byte reached the pod (no
    /// certificate for the caller, no identity, refused by the gate): 503, fail closed.
    pub fn is_mesh_refusal(&self) -> bool {
        matches!(
            self,
            UpstreamError::Tunnel(_, TunnelError::NoCertificate(_)) | UpstreamError::Denied(..) | UpstreamError::NoIdentity(_)
        )
    }
}

/// Each direction's buffer between a same-node caller and the HTTP enforcement of its
/// stream.
const FILTER_BUFFER: usize = 64 * 1024;

/// The stream to an admitted same-node pod: the pod connection itself (registered so
/// a new policy can shut it down), or, when HTTP rules apply to it and its requests are
/// not `decided_by_caller` (see [`super::local_authz`]), one end of an in-process pipe
/// whose other end is served by the HTTP enforcement.
fn local_stream(mesh: &MeshUpstreams, admitted: &crate::hbone::InboundRequest, pod: TcpStream, decided_by_caller: bool) -> UpstreamStream {
    use crate::authz::Closer;
    if !admitted.filtered || decided_by_caller {
        let closer = match std::os::fd::AsFd::as_fd(&pod).try_clone_to_owned() {
            Ok(fd) => Closer::Shutdown(fd),
            // Without a duplicate a policy change cannot close this stream (logged).
            Err(error) => {
                tracing::warn!(%error, "cannot duplicate a same-node pod connection: a policy change will not close it");
                Closer::Cancel(tokio_util::sync::CancellationToken::new())
            }
        };
        let registration = mesh.gate.register(admitted, closer);
        return UpstreamStream::Local(pod, registration);
    }
    let (near, far) = tokio::io::duplex(FILTER_BUFFER);
    let closing = tokio_util::sync::CancellationToken::new();
    let registration = mesh.gate.register(admitted, Closer::Cancel(closing.clone()));
    let target = mesh.gate.filter_target(admitted, mesh.access_log.clone());
    tokio::spawn(async move {
        let _registration = registration;
        tokio::select! {
            _ = crate::authz::serve_filtered(far, pod, target) => {}
            _ = closing.cancelled() => tracing::debug!("filtered same-node stream closed: refused by a new policy"),
        }
    });
    UpstreamStream::Filtered(near)
}

/// A pool key: connections are shared only between requests with the same source
/// (caller), identity, endpoint and path (plaintext, same-node or tunnelled).
type PoolKey = (Arc<CallerKey>, SocketAddr, MeshPath);

/// The mesh side of the upstreams: tunnels to other nodes, the gate of this node's pods.
pub struct MeshUpstreams {
    pub pool: Arc<HbonePool>,
    pub gate: Arc<InboundGate>,
    /// The access log switch (requests on same-node filtered streams are logged too).
    pub access_log: Arc<super::AccessLog>,
}

/// Upstream connection pools, keyed by source and endpoint address.
pub struct Upstreams {
    http1: Arc<Http1Pool<PoolKey>>,
    http2: Http2Pool<PoolKey>,
    /// Connections opened for requests (pool misses).
    connects: UpstreamConnects,
    sockets: Arc<dyn SocketFactory>,
    config: ConfigHandle,
    mesh: Option<MeshUpstreams>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    http2_keep_alive_interval: Duration,
    http2_keep_alive_timeout: Duration,
}

impl Upstreams {
    pub fn new(
        options: &ProxyOptions,
        sockets: Arc<dyn SocketFactory>,
        config: ConfigHandle,
        mesh: Option<MeshUpstreams>,
        connects: UpstreamConnects,
    ) -> Self {
        Self {
            http1: Arc::new(Http1Pool::new(options.max_idle_per_endpoint, options.idle_timeout)),
            http2: Http2Pool::new(),
            connects,
            sockets,
            config,
            mesh,
            connect_timeout: options.connect_timeout,
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
        let (closed, endpoints) = self.http1.reap();
        let closed = closed + self.http2.reap();
        if closed > 0 || endpoints > 0 {
            tracing::debug!(closed, endpoints, "reaped upstream pools");
        }
    }

    /// Endpoints with pooled connections (HTTP/1.1 idle, HTTP/2 shared).
    #[cfg(test)]
    fn pooled_endpoints(&self) -> (usize, usize) {
        let http1 = self.http1.keys();
        let http2 = self.http2.len();
        (http1, http2)
    }

    /// The source of a caller's upstream connections.
    pub fn source(&self, caller: crate::identity::CgroupId) -> Source {
        self.sockets.source(caller)
    }

    /// How `endpoint` is reached under the current configuration.
    pub fn path(&self, endpoint: SocketAddr) -> MeshPath {
        MeshPath::of(&self.config.load(), endpoint)
    }

    /// Connects to `endpoint` for `caller`: plaintext outside the mesh, through the
    /// inbound gate for mesh pods on this node, through an HBONE tunnel otherwise.
    pub async fn connect(&self, caller: &Caller, endpoint: SocketAddr) -> Result<UpstreamStream, UpstreamError> {
        let path = self.path(endpoint);
        self.connect_via(caller, endpoint, &path, false).await
    }

    /// `decided_by_caller`: every request on the stream goes through [`Self::send`],
    /// which decides it for a same-node pod with HTTP rules; such a stream is then a
    /// plain pod connection, not served as HTTP by the inbound gate's filter.
    async fn connect_via(&self, caller: &Caller, endpoint: SocketAddr, path: &MeshPath, decided_by_caller: bool) -> Result<UpstreamStream, UpstreamError> {
        match path {
            MeshPath::Plain => self.connect_tcp(caller.source(), endpoint).await.map(UpstreamStream::Plain),
            MeshPath::Local { guarded, .. } => {
                let (mesh, identity) = self.mesh_caller(caller, endpoint)?;
                let claim = StreamClaim {
                    peer: identity.clone(),
                    destination: Some(endpoint),
                    presented: None,
                    service: caller.call.service.clone(),
                    tunnel: Tunnel::Local,
                };
                let admitted = mesh.gate.admit(&claim).map_err(|denial| UpstreamError::Denied(endpoint, Box::new(denial)))?;
                // A guarded (STRICT) pod accepts connections only from the node's own
                // sockets (the kernel drops SYNs forwarded from a pod's namespace).
                let source = if *guarded { Source::Node } else { caller.source() };
                let pod = self.connect_tcp(source, endpoint).await?;
                Ok(local_stream(mesh, &admitted, pod, decided_by_caller))
            }
            MeshPath::Hbone { node, expected } => {
                let (mesh, identity) = self.mesh_caller(caller, endpoint)?;
                let key = TunnelKey { source: caller.source(), identity: identity.clone(), node: *node, expected: expected.clone() };
                let opened = mesh.pool.open(&key, endpoint, &caller.call).await;
                let outcome = match &opened {
                    Ok(_) => "ok",
                    Err(TunnelError::NoCertificate(_)) => "no_certificate",
                    Err(TunnelError::Refused { .. }) => "refused",
                    Err(_) => "failed",
                };
                mesh.gate.metrics().stream(&stream_labels("outbound", "hbone", identity, Some(expected), outcome));
                opened.map(|s| UpstreamStream::Hbone(Box::new(s))).map_err(|e| UpstreamError::Tunnel(endpoint, e))
            }
        }
    }

    /// The mesh side and the caller's identity, or why a mesh pod cannot be reached.
    fn mesh_caller<'a>(&'a self, caller: &'a Caller, endpoint: SocketAddr) -> Result<(&'a MeshUpstreams, &'a crate::identity::SpiffeId), UpstreamError> {
        match (&self.mesh, caller.identity()) {
            (Some(mesh), Some(identity)) => Ok((mesh, identity)),
            (Some(mesh), None) => {
                mesh.gate.metrics().stream(&crate::hbone::StreamLabels {
                    direction: "outbound",
                    tunnel: "none",
                    source_namespace: Arc::from(""),
                    source_service_account: Arc::from(""),
                    destination_namespace: Arc::from(""),
                    destination_service_account: Arc::from(""),
                    outcome: "no_identity",
                });
                Err(UpstreamError::NoIdentity(endpoint))
            }
            (None, _) => Err(UpstreamError::NoIdentity(endpoint)),
        }
    }

    /// A plain TCP connection to `endpoint` from `source` (socket creation counts in
    /// the timeout).
    async fn connect_tcp(&self, source: Source, endpoint: SocketAddr) -> Result<TcpStream, UpstreamError> {
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
    /// version needs (origin-form for HTTP/1.1, absolute-form for HTTP/2). An HTTP/1.1
    /// connection goes back to the pool when the response body ends or is dropped.
    /// `config` is the request's snapshot of the configuration.
    pub async fn send(
        &self,
        config: &crate::config::ProxyConfig,
        caller: &Caller,
        endpoint: SocketAddr,
        version: UpstreamVersion,
        request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let key = (caller.key(), endpoint, MeshPath::of(config, endpoint));
        let request = self.decide_local(config, caller, endpoint, &key.2, request)?;
        match version {
            UpstreamVersion::Http1 => self.send_http1(caller, key, request).await,
            UpstreamVersion::Http2 => Ok(self.send_http2(caller, key, request).await?.map(body::boxed)),
        }
    }

    /// Decides a request to a same-node mesh pod whose HTTP rules apply to the caller
    /// ([`super::local_authz`]); other requests pass unchanged.
    fn decide_local(
        &self,
        config: &crate::config::ProxyConfig,
        caller: &Caller,
        endpoint: SocketAddr,
        path: &MeshPath,
        request: Request<Body>,
    ) -> Result<Request<Body>, UpstreamError> {
        let (MeshPath::Local { .. }, Some(mesh), Some(identity)) = (path, &self.mesh, caller.identity()) else {
            return Ok(request);
        };
        super::local_authz::decide(&mesh.gate, &config.authorization, identity, endpoint, request)
    }

    async fn new_http1(&self, caller: &Caller, key: &PoolKey) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let endpoint = key.1;
        let stream = self.connect_via(caller, endpoint, &key.2, true).await?;
        self.connects.http1.inc();
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Handshake(endpoint, e))?;
        // One task per connection (not per request) drives it.
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%endpoint, %error, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(sender)
    }

    /// A pooled connection that is ready for a request, if one is left. A connection
    /// that closed since it was pooled is dropped and the next one tried.
    async fn pooled_http1(&self, key: &PoolKey) -> Option<http1::SendRequest<Body>> {
        while let Some(mut sender) = self.http1.take(key) {
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
        None
    }

    async fn send_http1(&self, caller: &Caller, key: PoolKey, request: Request<Body>) -> Result<Response<Body>, UpstreamError> {
        let endpoint = key.1;
        let mut request = request;
        // A pooled connection may have been closed by the backend in the meantime; hyper
        // hands the request back when it was not sent, and we retry on a new connection.
        if let Some(mut sender) = self.pooled_http1(&key).await {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.recycled(response, key, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(UpstreamError::Request(endpoint, e.into_error())),
                },
            }
        }
        // Boxed: a connect (a tunnel's handshake included) is rare, and inline its state
        // would size every request's future.
        let mut sender = Box::pin(self.new_http1(caller, &key)).await?;
        let response = sender.send_request(request).await.map_err(|e| UpstreamError::Request(endpoint, e))?;
        Ok(self.recycled(response, key, sender))
    }

    /// The response, its connection returned to the pool once its body is done with.
    fn recycled(&self, response: Response<Incoming>, key: PoolKey, sender: http1::SendRequest<Body>) -> Response<Body> {
        response.map(|incoming| body::boxed(Recycled::new(incoming, self.http1.clone(), key, sender)))
    }

    async fn http2_sender(&self, caller: &Caller, key: PoolKey) -> Result<http2::SendRequest<Body>, UpstreamError> {
        if let Some(sender) = self.http2.get(&key) {
            return Ok(sender);
        }
        // Boxed: rare, and inline its state would size every request's future.
        Box::pin(self.new_http2(caller, key)).await
    }

    async fn new_http2(&self, caller: &Caller, key: PoolKey) -> Result<http2::SendRequest<Body>, UpstreamError> {
        let endpoint = key.1;
        let stream = self.connect_via(caller, endpoint, &key.2, true).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_keep_alive_interval)
            .keep_alive_timeout(self.http2_keep_alive_timeout)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Handshake(endpoint, e))?;
        self.connects.http2.inc();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%endpoint, %error, "upstream HTTP/2 connection ended");
            }
        });
        self.http2.insert(key, sender.clone());
        Ok(sender)
    }

    async fn send_http2(&self, caller: &Caller, key: PoolKey, request: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        let endpoint = key.1;
        let mut sender = self.http2_sender(caller, key).await?;
        sender.ready().await.map_err(|e| UpstreamError::Request(endpoint, e))?;
        sender.send_request(request).await.map_err(|e| UpstreamError::Request(endpoint, e))
    }

    /// A dedicated HTTP/1.1 connection that supports protocol upgrades (not pooled).
    pub async fn send_upgrade(
        &self,
        caller: &Caller,
        endpoint: SocketAddr,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let stream = self.connect(caller, endpoint).await?;
        self.connects.upgrade.inc();
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
    use crate::config::ProxyConfig;
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
        let pools = Arc::new(Upstreams::new(&options, Arc::new(crate::proxy::NodeSockets), ConfigHandle::default(), None, UpstreamConnects::default()));
        Upstreams::start_reaper(&pools);
        let request = Request::get("/").body(body::empty()).unwrap();
        let response = pools.send(&ProxyConfig::default(), &Caller::node(), addr, UpstreamVersion::Http1, request).await.unwrap();
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
    async fn sequential_requests_reuse_one_pooled_connection_and_count_the_connect() {
        use http_body_util::BodyExt;
        let (addr, _closed) = backend(None).await;
        let connects = UpstreamConnects::default();
        let pools = Upstreams::new(&ProxyOptions::default(), Arc::new(crate::proxy::NodeSockets), ConfigHandle::default(), None, connects.clone());
        for _ in 0..20 {
            let request = Request::get("/").body(body::empty()).unwrap();
            let response = pools.send(&ProxyConfig::default(), &Caller::node(), addr, UpstreamVersion::Http1, request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        }
        // A response dropped before its body was read gives the connection back too.
        let request = Request::get("/").body(body::empty()).unwrap();
        drop(pools.send(&ProxyConfig::default(), &Caller::node(), addr, UpstreamVersion::Http1, request).await.unwrap());
        let request = Request::get("/").body(body::empty()).unwrap();
        assert_eq!(pools.send(&ProxyConfig::default(), &Caller::node(), addr, UpstreamVersion::Http1, request).await.unwrap().status(), 200);
        assert_eq!(connects.http1.get(), 1, "one connection for 22 sequential requests");
        assert_eq!(pools.pooled_endpoints(), (1, 0));
    }

    #[tokio::test]
    async fn concurrent_requests_open_one_connection_each_then_reuse_them() {
        use http_body_util::BodyExt;
        let (addr, _closed) = backend(None).await;
        let connects = UpstreamConnects::default();
        let pools = Arc::new(Upstreams::new(&ProxyOptions::default(), Arc::new(crate::proxy::NodeSockets), ConfigHandle::default(), None, connects.clone()));
        let (caller, config) = (Caller::node(), ProxyConfig::default());
        for _round in 0..3 {
            let responses = futures::future::join_all((0..4).map(|_| {
                let request = Request::get("/").body(body::empty()).unwrap();
                pools.send(&config, &caller, addr, UpstreamVersion::Http1, request)
            }))
            .await;
            for response in responses {
                response.unwrap().into_body().collect().await.unwrap();
            }
        }
        assert_eq!(connects.http1.get(), 4, "later rounds reuse the first round's connections");
    }

    /// Two data-path workers (current-thread runtimes on their own threads) sharing one
    /// `Upstreams`, taking turns: each opens one connection per version and reuses it,
    /// never the other's (whose task runs on the other thread).
    #[test]
    fn each_worker_thread_reuses_only_the_connections_it_opened() {
        use http_body_util::BodyExt;
        let backends = tokio::runtime::Runtime::new().unwrap();
        let (addr, _closed) = backends.block_on(backend(None));
        let connects = UpstreamConnects::default();
        let pools = Arc::new(Upstreams::new(&ProxyOptions::default(), Arc::new(crate::proxy::NodeSockets), ConfigHandle::default(), None, connects.clone()));
        let worker = |pools: Arc<Upstreams>| {
            let (turn, mut turns) = tokio::sync::mpsc::unbounded_channel::<std::sync::mpsc::Sender<()>>();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    while let Some(done) = turns.recv().await {
                        for (version, uri) in [(UpstreamVersion::Http1, "/"), (UpstreamVersion::Http2, "http://svc/")] {
                            let request = Request::get(uri).body(body::empty()).unwrap();
                            let response = pools.send(&ProxyConfig::default(), &Caller::node(), addr, version, request).await.unwrap();
                            response.into_body().collect().await.unwrap();
                        }
                        done.send(()).unwrap();
                    }
                });
            });
            turn
        };
        let workers = [worker(pools.clone()), worker(pools.clone())];
        for _round in 0..3 {
            for worker in &workers {
                let (done, finished) = std::sync::mpsc::channel();
                worker.send(done).unwrap();
                finished.recv_timeout(Duration::from_secs(10)).expect("a worker's requests did not finish");
            }
        }
        assert_eq!((connects.http1.get(), connects.http2.get()), (2, 2), "one connection per worker and version");
    }

    #[tokio::test]
    async fn closed_http2_connections_are_forgotten() {
        let (addr, mut closed) = backend(Some(Duration::from_millis(300))).await;
        let options = ProxyOptions { idle_timeout: Duration::from_millis(300), ..ProxyOptions::default() };
        let pools = Arc::new(Upstreams::new(&options, Arc::new(crate::proxy::NodeSockets), ConfigHandle::default(), None, UpstreamConnects::default()));
        Upstreams::start_reaper(&pools);
        let request = Request::get("http://svc/").body(body::empty()).unwrap();
        pools.send(&ProxyConfig::default(), &Caller::node(), addr, UpstreamVersion::Http2, request).await.unwrap();
        assert_eq!(pools.pooled_endpoints(), (0, 1));
        tokio::time::timeout(Duration::from_secs(5), closed.recv()).await.expect("backend never closed").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while pools.pooled_endpoints() != (0, 0) {
            assert!(tokio::time::Instant::now() < deadline, "closed HTTP/2 connection still pooled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
