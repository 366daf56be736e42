//! Loopback fixtures for proxy-core's data-path tests: a proxy whose origin resolver
//! reports a fixed Service address, and small backends.

#![allow(dead_code)]

pub mod authz_fixtures;
pub mod h2_frames;
pub mod mesh_pki;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::config::{AppProtocol, ConfigHandle, EndpointSet, ProxyConfig, RouteSet, ServicePort, ServiceRef};
use ambit_proxy_core::identity::{CgroupId, Origin, OriginError, OriginResolver, Workload};
use ambit_proxy_core::proxy::{Proxy, ProxyOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The Service address every test connection claims to have dialled. It is only a
/// key: nothing ever connects to it.
pub const VIP: &str = "10.96.0.10:80";
pub const CALLER_CGROUP: u64 = 4242;
pub const CALLER_NAMESPACE: &str = "client-ns";

/// Resolves every connection to [`VIP`], dialled by the workload in [`CALLER_CGROUP`].
pub struct FixedOrigin;

impl OriginResolver for FixedOrigin {
    fn resolve(&self, _peer: SocketAddr, _local: SocketAddr) -> Result<Origin, OriginError> {
        Ok(Origin { destination: VIP.parse().unwrap(), pod_cgroup: CgroupId(CALLER_CGROUP) })
    }
}

pub fn service_port(protocol: AppProtocol, endpoints: Vec<SocketAddr>, routes: RouteSet) -> ServicePort {
    ServicePort {
        service: ServiceRef::new("server-ns", "svc"),
        port: 80,
        port_name: Some("http".into()),
        protocol,
        endpoints: Arc::new(EndpointSet::new(endpoints)),
        routes,
    }
}

pub fn config_with(port: ServicePort) -> ProxyConfig {
    let mut services = HashMap::new();
    services.insert(VIP.parse().unwrap(), Arc::new(port));
    let mut workloads = HashMap::new();
    workloads.insert(
        CgroupId(CALLER_CGROUP),
        Arc::new(Workload {
            namespace: CALLER_NAMESPACE.into(),
            name: "client-pod".into(),
            workload: "client".into(),
            uid: "uid-1".into(),
            service_account: "default".into(),
            cgroup: CgroupId(CALLER_CGROUP),
        }),
    );
    ProxyConfig { services, workloads, version: 1, ..ProxyConfig::default() }
}

pub struct RunningProxy {
    pub addr: SocketAddr,
    pub config: ConfigHandle,
    pub shutdown: CancellationToken,
    pub proxy: Arc<Proxy>,
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_proxy(config: ProxyConfig) -> RunningProxy {
    start_proxy_with(config, ProxyOptions::default()).await
}

/// A proxy with `options` (the detection timeout shortened for tests).
pub async fn start_proxy_with(config: ProxyConfig, options: ProxyOptions) -> RunningProxy {
    let handle = ConfigHandle::new(config);
    let options = ProxyOptions { detect_timeout: Duration::from_millis(100), ..options };
    let proxy = Proxy::new(handle.clone(), Arc::new(FixedOrigin), options);
    let listener = ambit_proxy_core::proxy::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(proxy.clone().serve(listener, shutdown.clone(), Duration::from_secs(1)));
    RunningProxy { addr, config: handle, shutdown, proxy }
}

/// An HTTP/1.1 + h2c backend that answers with `name`, the request line and headers:
/// `backend=<name>\npath=<path>\nversion=<v>\nheader:<name>=<value>...`.
pub async fn http_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let delay = req
                        .headers()
                        .get("x-delay-ms")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let mut text = format!(
                        "backend={name}\nmethod={}\npath={}\nversion={:?}\n",
                        req.method(),
                        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
                        req.version()
                    );
                    if let Some(authority) = req.uri().authority() {
                        text.push_str(&format!("authority={authority}\n"));
                    }
                    for (k, v) in req.headers() {
                        text.push_str(&format!("header:{}={}\n", k, v.to_str().unwrap_or("?")));
                    }
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    text.push_str(&format!("body={}\n", String::from_utf8_lossy(&body)));
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A server-first TCP backend: sends `banner` on connect, then echoes what it receives
/// until the client half-closes, then sends "bye" and closes.
pub async fn banner_backend(banner: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                stream.write_all(banner.as_bytes()).await.unwrap();
                let mut buf = vec![0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => stream.write_all(&buf[..n]).await.unwrap(),
                    }
                }
                let _ = stream.write_all(b"bye").await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// An address where nothing listens (bound, then closed).
pub async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// Sends raw bytes and reads the whole answer (until close or `wait`).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.lines().find_map(|l| l.strip_prefix(&format!("{key}=")))
}

/// Opens a WebSocket upgrade through the proxy at `proxy` and returns the connection
/// once the `101 Switching Protocols` head has been read.
pub async fn websocket_through(proxy: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}
