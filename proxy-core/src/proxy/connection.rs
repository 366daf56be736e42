//! One accepted connection: origin, caller, protocol, then HTTP or TCP handling.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::detect::{self, Detected};
use super::in_flight::{InFlight, InFlightBody};
use super::caller::Caller;
use super::request_framing::{Opening, RequestFramingGuard};
use super::{drain, http, http1_park, l4_route, tcp, Proxy, ProxyOptions};
use crate::config::{AppProtocol, ProxyConfig};
use crate::hbone::CallContext;
use crate::identity::{Origin, SpiffeId, Workload};
use crate::limits::Budget;
use crate::metrics::TcpLabels;
use crate::rate_limited_log::{RateLimitedLog, DEFAULT_INTERVAL};

/// What is known about a connection once it is accepted.
#[derive(Debug)]
pub struct ConnContext {
    pub origin: Origin,
    pub peer: SocketAddr,
    /// The caller, as known when the connection was accepted.
    pub caller: Option<Arc<Workload>>,
    /// Where this connection's upstream connections come from (the caller's netns),
    /// with the caller's identity for mesh pods.
    pub source: Caller,
    /// The dialled Service port, `namespace/name:port` (also its metrics label).
    service: Arc<str>,
    /// The caller pod's budget: each request takes a unit of it (two atomic adds).
    pub budget: Arc<Budget>,
}

impl ConnContext {
    /// The caller as of `config` (falls back to the one known at accept time),
    /// borrowed (no reference count).
    pub fn caller_of<'a>(&'a self, config: &'a ProxyConfig) -> Option<&'a Workload> {
        config.workload(self.origin.pod_cgroup).or(self.caller.as_ref()).map(|w| &**w)
    }

    pub fn caller_namespace(&self) -> Option<Arc<str>> {
        self.caller.as_ref().map(|w| w.namespace.clone())
    }

    pub fn caller_name(&self) -> Option<Arc<str>> {
        self.caller.as_ref().map(|w| w.name.clone())
    }

    pub fn service_label(&self) -> &str {
        &self.service
    }

    /// The dialled Service port as a shared metrics label.
    pub fn service_arc(&self) -> &Arc<str> {
        &self.service
    }

    /// The TCP metrics labels of this connection.
    pub fn tcp_labels(&self) -> TcpLabels {
        let (namespace, workload) = match &self.caller {
            Some(w) => (w.namespace.clone(), w.workload.clone()),
            None => (Arc::from(""), Arc::from("")),
        };
        TcpLabels { caller_namespace: namespace, caller_workload: workload, service: self.service.clone() }
    }
}

pub(super) async fn handle(proxy: Arc<Proxy>, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::debug!(%error, "accepted socket has no local address");
            return;
        }
    };
    let origin = match proxy.resolver.resolve(peer, local) {
        Ok(origin) => origin,
        Err(error) => {
            // Not a redirected connection (or its record is gone): never guess. Anyone
            // who can reach the listener can trigger this, hence rate-limited.
            static NO_RECORD: RateLimitedLog = RateLimitedLog::new(DEFAULT_INTERVAL);
            if let Some(suppressed) = NO_RECORD.admit() {
                tracing::warn!(%error, %peer, suppressed, "rejecting connection without a kernel redirect record");
            }
            tcp::reset(stream);
            return;
        }
    };
    let config = proxy.config.load();
    let Some(service) = config.service(origin.destination).cloned() else {
        static UNKNOWN_SERVICE: RateLimitedLog = RateLimitedLog::new(DEFAULT_INTERVAL);
        if let Some(suppressed) = UNKNOWN_SERVICE.admit() {
            tracing::warn!(dialled = %origin.destination, suppressed, "dialled address is not a known Service port; resetting");
        }
        tcp::reset(stream);
        return;
    };
    let caller = config.workload(origin.pod_cgroup).cloned();
    let budget = proxy.budgets.caller(origin.pod_cgroup);
    // Held until this connection is done with, whichever way it ends.
    let _permit = match proxy.budgets.connection(&budget) {
        Ok(permit) => permit,
        Err(limit) => {
            let namespace = caller.as_ref().map_or_else(|| Arc::from(""), |w| w.namespace.clone());
            proxy.refused(limit, &namespace, caller.as_ref().map_or("", |w| &*w.name));
            tcp::reset(stream);
            return;
        }
    };
    let service_label: Arc<str> = format!("{}:{}", service.service, service.port).into();
    let source = upstream_caller(&proxy, origin, peer, caller.as_deref(), &service_label);
    let ctx = Arc::new(ConnContext { origin, peer, caller, source, service: service_label, budget });
    if proxy.access_log.should_log() {
        tracing::info!(
            target: "ambit::access",
            kind = "connection",
            caller_namespace = ctx.caller_namespace().as_deref().unwrap_or(""),
            caller_pod = ctx.caller_name().as_deref().unwrap_or(""),
            caller_workload = ctx.caller.as_ref().map(|w| &*w.workload).unwrap_or(""),
            caller_cgroup = origin.pod_cgroup.0,
            client = %peer,
            service = %ctx.service,
            dialled = %origin.destination,
        );
    }
    drop(config);

    // TLSRoutes/TCPRoutes for this caller's scope: routed per connection, whatever the
    // port's protocol (also `appProtocol: http` with only L4 routes attached).
    let caller_namespace = ctx.caller_namespace();
    if let Some(l4) = service.routes.l4_for_caller(caller_namespace.as_deref().unwrap_or("")).cloned() {
        // Boxed, as the TCP path below: inline, their state would size every
        // connection's task, HTTP ones included (about 5 KiB each).
        Box::pin(l4_route::serve(&proxy, &ctx, stream, l4)).await;
        return;
    }

    let http = match service.protocol {
        AppProtocol::Http | AppProtocol::H2c => true,
        AppProtocol::Tcp => false,
        AppProtocol::Detect => match detect::detect(&stream, proxy.options.detect_timeout).await {
            Ok(Detected::Http1 | Detected::Http2) => true,
            Ok(Detected::Opaque) => false,
            Err(error) => {
                tracing::debug!(%error, "connection failed during protocol detection");
                return;
            }
        },
    };
    if http {
        serve_http(proxy, ctx, stream, shutdown).await;
    } else {
        let endpoint = service.endpoints.pick();
        Box::pin(tcp::passthrough(&proxy, &ctx, stream, endpoint)).await;
    }
}

/// The caller as its upstream connections see it: its socket source, its SPIFFE ID
/// (from its service account, in the proxy's trust domain) and what a tunnel's CONNECT
/// says about the call.
fn upstream_caller(proxy: &Proxy, origin: Origin, peer: SocketAddr, caller: Option<&Workload>, service: &Arc<str>) -> Caller {
    let trust_domain = &proxy.options.hbone.trust_domain;
    let identity = caller.and_then(|w| SpiffeId::new(trust_domain.clone(), &w.namespace, &w.service_account).ok());
    let call = CallContext {
        client: Some(peer),
        caller_namespace: caller.map(|w| w.namespace.to_string()),
        caller_workload: caller.map(|w| w.workload.to_string()),
        service: Some(service.to_string()),
        service_host: None,
    };
    Caller::new(proxy.upstream.source(origin.pod_cgroup), identity, Arc::new(call))
}

async fn serve_http(proxy: Arc<Proxy>, ctx: Arc<ConnContext>, stream: TcpStream, shutdown: CancellationToken) {
    let in_flight = InFlight::new();
    let service = hyper::service::service_fn({
        let proxy = proxy.clone();
        let in_flight = in_flight.clone();
        move |request: hyper::Request<hyper::body::Incoming>| {
            let proxy = proxy.clone();
            let ctx = ctx.clone();
            let guard = in_flight.start();
            async move {
                let http1 = request.version() < hyper::Version::HTTP_2;
                let http::Answer { mut response, permit } = http::handle(proxy, ctx, request).await;
                if http1 && guard.draining() {
                    // This connection closes after the answer: say so, so that the
                    // client does not send another request on it.
                    response.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response.map(|body| InFlightBody::new(body, guard, permit)))
            }
        }
    });
    // HTTP/1 requests with ambiguous framing get 400 before hyper sees them; heads
    // that take too long close the connection.
    let mut io = RequestFramingGuard::new(stream, proxy.options.max_header_bytes)
        .with_head_timeout(proxy.options.timeouts.request_head);
    match io.opening().await {
        Ok(Opening::Http1) => {
            let builder = http1_server(&proxy.options);
            let timeouts = http1_park::Timeouts {
                http_idle: proxy.options.timeouts.http_idle,
                request_head: proxy.options.timeouts.request_head,
            };
            http1_park::serve(&builder, io, service, &in_flight, timeouts, &shutdown).await;
        }
        // HTTP/2 (or input hyper refuses itself): hyper's automatic server.
        Ok(Opening::Passthrough) => serve_auto(&proxy, io, service, &in_flight, &shutdown).await,
        Err(error) => tracing::debug!(%error, "HTTP connection ended before its first request"),
    }
}

async fn serve_auto<S>(
    proxy: &Proxy,
    io: RequestFramingGuard<TcpStream>,
    service: S,
    in_flight: &InFlight,
    shutdown: &CancellationToken,
) where
    S: hyper::service::Service<::http::Request<hyper::body::Incoming>, Response = ::http::Response<InFlightBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = http_server(&proxy.options);
    // Boxed: inline, hyper's HTTP/2 state would size every connection's task.
    let mut conn = Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    let since = in_flight.started();
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            match drain::until_pending_request(&mut conn, in_flight, since, proxy.options.timeouts.request_head).await {
                Some(result) => result,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
        _ = in_flight.idle_for(proxy.options.timeouts.http_idle) => {
            tracing::debug!("closing idle HTTP connection");
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}

/// The downstream HTTP/1.1 server of a connection served in rounds (see `http1_park`),
/// configured as [`http_server`]'s HTTP/1 side.
fn http1_server(options: &ProxyOptions) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(options.max_header_bytes.max(8192))
        // A whole head read at once is held to the limit too (hyper's buffer limit
        // applies only to a head still incomplete).
        .max_header_size(options.max_header_bytes)
        .keep_alive(true);
    builder
}

/// The downstream HTTP server: HTTP/1.1 and h2c with the configured timeouts and limits.
fn http_server(options: &ProxyOptions) -> auto::Builder<TokioExecutor> {
    let timeouts = &options.timeouts;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // No hyper head timer: it would arm a timer (an allocation and a clock read)
        // for every request. Keep-alive idle time is bounded by the in-flight watcher
        // (`http_idle`), a head in progress by the framing guard's timer.
        .header_read_timeout(None)
        .max_buf_size(options.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeouts.http2_keep_alive_interval)
        .keep_alive_timeout(timeouts.http2_keep_alive_timeout)
        .max_concurrent_streams(options.http2.max_concurrent_streams)
        .max_pending_accept_reset_streams(options.http2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(options.http2.max_local_error_reset_streams)
        .max_header_list_size(options.max_header_bytes as u32);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoOrigin;

    impl crate::identity::OriginResolver for NoOrigin {
        fn resolve(&self, _: SocketAddr, _: SocketAddr) -> Result<Origin, crate::identity::OriginError> {
            Err(crate::identity::OriginError::Lookup(String::new()))
        }
    }

    /// Every connection's task holds `handle`'s state for as long as the connection
    /// lives, idle ones included: the rarely used paths' state is boxed.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let config = crate::config::ConfigHandle::new(ProxyConfig::default());
        let proxy = Proxy::new(config, Arc::new(NoOrigin), ProxyOptions::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let task = handle(proxy, stream, addr, CancellationToken::new());
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2048, "a connection's task holds {size} bytes");
    }
}
