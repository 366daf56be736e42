//! Upstream sockets come from the [`SocketFactory`] per caller, and pooled upstream
//! connections are never shared between callers. On loopback: each caller connects to
//! the proxy from its own address (127.0.0.2, .3), the origin resolver maps that to a
//! caller cgroup, and the test factory binds that caller's upstream sockets to its own
//! source address (127.0.0.12, .13), which the backend reports.

mod support;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::config::{AppProtocol, ConfigHandle, RouteSet};
use ambit_proxy_core::identity::{CgroupId, Origin, OriginError, OriginResolver};
use ambit_proxy_core::proxy::{Proxy, ProxyOptions, SocketFactory, SocketFuture, Source};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use support::{config_with, service_port, VIP};

/// Caller `n` (2 or 3) connects from 127.0.0.n; its upstream sockets use 127.0.0.(n+10).
fn caller_addr(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

struct ByPeer;

impl OriginResolver for ByPeer {
    fn resolve(&self, peer: SocketAddr, _local: SocketAddr) -> Result<Origin, OriginError> {
        let IpAddr::V4(v4) = peer.ip() else { return Err(OriginError::Lookup("not v4".into())) };
        Ok(Origin { destination: VIP.parse().unwrap(), pod_cgroup: CgroupId(u64::from(v4.octets()[3])) })
    }
}

#[derive(Default)]
struct BoundSockets {
    made: AtomicUsize,
}

impl SocketFactory for BoundSockets {
    fn source(&self, caller: CgroupId) -> Source {
        Source::Pod(caller)
    }

    fn socket(&self, source: Source, _endpoint: SocketAddr) -> SocketFuture {
        self.made.fetch_add(1, Ordering::Relaxed);
        let Source::Pod(CgroupId(n)) = source else { panic!("the factory always names the caller") };
        let result = (|| {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(caller_addr(n as u8 + 10), 0))?;
            Ok(socket)
        })();
        Box::pin(std::future::ready(result))
    }
}

/// An HTTP/1.1 + h2c backend answering with the peer address it saw.
async fn peer_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(peer.ip().to_string()))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A TCP backend that writes the peer address it saw and closes.
async fn tcp_peer_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            let _ = stream.write_all(peer.ip().to_string().as_bytes()).await;
        }
    });
    addr
}

async fn start(protocol: AppProtocol, backend: SocketAddr) -> (SocketAddr, Arc<BoundSockets>, CancellationToken) {
    let config = ConfigHandle::new(config_with(service_port(protocol, vec![backend], RouteSet::default())));
    let sockets = Arc::new(BoundSockets::default());
    let proxy = Proxy::with_sockets(config, Arc::new(ByPeer), ProxyOptions::default(), None, sockets.clone());
    let listener = ambit_proxy_core::proxy::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(proxy.serve(listener, shutdown.clone(), Duration::from_secs(1)));
    (addr, sockets, shutdown)
}

async fn connect_from(caller: u8, proxy: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(caller_addr(caller), 0)).unwrap();
    socket.connect(proxy).await.unwrap()
}

/// Sends `count` requests over one client connection of `caller`; returns what the
/// backend saw for each.
async fn requests(caller: u8, proxy: SocketAddr, count: usize, http2: bool) -> Vec<String> {
    let io = TokioIo::new(connect_from(caller, proxy).await);
    let mut seen = Vec::new();
    if http2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        for _ in 0..count {
            let request = Request::get("http://svc/").body(Empty::<Bytes>::new()).unwrap();
            let response = sender.send_request(request).await.unwrap();
            seen.push(String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap());
        }
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        for _ in 0..count {
            sender.ready().await.unwrap();
            let request = Request::get("/").header("host", "svc").body(Empty::<Bytes>::new()).unwrap();
            let response = sender.send_request(request).await.unwrap();
            seen.push(String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap());
        }
    }
    seen
}

async fn pooled_per_caller(protocol: AppProtocol, http2: bool) {
    let (proxy, sockets, shutdown) = start(protocol, peer_backend().await).await;
    for _round in 0..3 {
        for caller in [2u8, 3] {
            let seen = requests(caller, proxy, 4, http2).await;
            let own = caller_addr(caller + 10).to_string();
            assert!(seen.iter().all(|s| *s == own), "caller {caller} must be seen as {own}: {seen:?}");
        }
    }
    // Reuse still works within each caller's pool: 24 requests, far fewer connections.
    let made = sockets.made.load(Ordering::Relaxed);
    assert!((2..24).contains(&made), "upstream sockets made: {made}");
    shutdown.cancel();
}

#[tokio::test]
async fn http1_pool_is_per_caller() {
    pooled_per_caller(AppProtocol::Http, false).await;
}

#[tokio::test]
async fn http2_connections_are_per_caller() {
    pooled_per_caller(AppProtocol::H2c, true).await;
}

#[tokio::test]
async fn tcp_passthrough_uses_the_callers_socket() {
    let (proxy, sockets, shutdown) = start(AppProtocol::Tcp, tcp_peer_backend().await).await;
    for caller in [2u8, 3] {
        let mut stream = connect_from(caller, proxy).await;
        let mut seen = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut seen)).await.unwrap().unwrap();
        assert_eq!(seen, caller_addr(caller + 10).to_string());
    }
    assert_eq!(sockets.made.load(Ordering::Relaxed), 2);
    shutdown.cancel();
}
