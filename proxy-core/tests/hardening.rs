//! One tenant must never hurt another: slow and silent clients are cut off, idle
//! connections closed, route timeouts cover whole responses, HTTP/2 floods end in
//! GOAWAY, and mirrors stay within the node-wide cap (loopback, fixed origin).

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_proxy_core::config::{AppProtocol, EndpointSet, RouteSet, ServiceRef};
use ambit_proxy_core::proxy::{ConnectionTimeouts, MirrorLimits, ProxyOptions};
use ambit_proxy_core::routes::{
    BackendFilters, BackendSet, BackendTarget, Forward, Mirror, RouteKind, RouteList, RouteMeta, RouteRef, Rule,
    RuleAction, RuleFilters, ServiceBackend, Timeouts, WeightedBackend,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::h2_frames::{self, frame};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn timeouts(f: impl FnOnce(&mut ConnectionTimeouts)) -> ProxyOptions {
    let mut options = ProxyOptions::default();
    f(&mut options.timeouts);
    options
}

/// Reads until the proxy closes the connection (EOF or reset) or `limit` passes;
/// returns when it closed, and what it sent.
async fn wait_closed<R: AsyncRead + Unpin>(stream: &mut R, limit: Duration) -> (Option<Instant>, Vec<u8>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (None, seen),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(Instant::now()), seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_half_sent_request_head_is_cut_off_within_the_head_timeout() {
    let backend = http_backend("a").await;
    let options = timeouts(|t| t.request_head = Duration::from_secs(1));
    let proxy = start_proxy_with(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default())), options).await;
    let (mut stream, mut trickle) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    let started = Instant::now();
    trickle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Trickling more header bytes must not extend the deadline.
    let trickler = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"X").await.is_err() {
                return;
            }
        }
    });
    let (closed, answer) = wait_closed(&mut stream, Duration::from_secs(6)).await;
    trickler.abort();
    let closed = closed.expect("slow head not cut off").duration_since(started);
    assert!(closed >= Duration::from_millis(900), "cut off early: {closed:?}");
    assert!(closed < Duration::from_secs(4), "cut off late: {closed:?}");
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&answer));

    // A head sent in time on the same kind of connection is answered.
    let answer = raw_exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_head_timeout() {
    let backend = http_backend("a").await;
    let options = timeouts(|t| t.request_head = Duration::from_secs(1));
    let proxy = start_proxy_with(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default())), options).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    let (closed, _) = wait_closed(&mut stream, Duration::from_secs(6)).await;
    let closed = closed.expect("silent connection not closed").duration_since(started);
    assert!((Duration::from_millis(900)..Duration::from_secs(4)).contains(&closed), "{closed:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let backend = http_backend("a").await;
    let options = timeouts(|t| t.http_idle = Duration::from_millis(1500));
    let proxy = start_proxy_with(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default())), options).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..2 {
        // Requests within the idle timeout keep the connection open.
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let answered = Instant::now() - Duration::from_millis(700);
    let (closed, _) = wait_closed(&mut stream, Duration::from_secs(8)).await;
    let idle = closed.expect("idle keep-alive connection not closed").duration_since(answered);
    assert!((Duration::from_millis(1400)..Duration::from_secs(5)).contains(&idle), "{idle:?}");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let backend = http_backend("a").await;
    let options = timeouts(|t| t.http_idle = Duration::from_secs(1));
    let proxy = start_proxy_with(config_with(service_port(AppProtocol::H2c, vec![backend], RouteSet::default())), options).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get("http://svc/").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let answered = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), conn).await.expect("idle HTTP/2 connection not closed").unwrap().ok();
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(900), "{idle:?}");
}

#[tokio::test]
async fn an_idle_tcp_passthrough_connection_is_closed_on_both_sides() {
    let (backend, mut backend_closed) = silent_tcp_backend().await;
    let options = timeouts(|t| t.stream_idle = Duration::from_secs(1));
    let proxy = start_proxy_with(config_with(service_port(AppProtocol::Tcp, vec![backend], RouteSet::default())), options).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let last_byte = Instant::now();
    let (closed, _) = wait_closed(&mut stream, Duration::from_secs(6)).await;
    let idle = closed.expect("idle TCP connection not closed").duration_since(last_byte);
    assert!((Duration::from_millis(900)..Duration::from_secs(4)).contains(&idle), "{idle:?}");
    let got = tokio::time::timeout(Duration::from_secs(2), backend_closed.recv()).await.expect("backend side kept open");
    assert_eq!(got.as_deref(), Some(&b"ping"[..]));
}

/// A WebSocket backend: accepts the upgrade, echoes the first bytes, then stays silent
/// and reports when the proxy closes the upgraded connection.
async fn upgrade_backend() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else { return };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read_exact(&mut byte).await.is_err() {
                return;
            }
            head.push(byte[0]);
        }
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").await;
        let mut buf = [0u8; 64];
        if let Ok(n @ 1..) = s.read(&mut buf).await {
            let _ = s.write_all(&buf[..n]).await;
        }
        while matches!(s.read(&mut buf).await, Ok(1..)) {}
        let _ = tx.send(());
    });
    (addr, rx)
}

#[tokio::test]
async fn an_idle_upgraded_connection_is_closed_on_both_sides() {
    let (backend, mut backend_closed) = upgrade_backend().await;
    let options = timeouts(|t| t.stream_idle = Duration::from_secs(1));
    let proxy = start_proxy_with(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default())), options).await;
    let mut stream = websocket_through(proxy.addr).await;
    stream.write_all(b"frame").await.unwrap();
    let mut echoed = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    let last_byte = Instant::now();
    let (closed, _) = wait_closed(&mut stream, Duration::from_secs(6)).await;
    let idle = closed.expect("idle upgraded connection not closed").duration_since(last_byte);
    assert!((Duration::from_millis(900)..Duration::from_secs(4)).contains(&idle), "{idle:?}");
    tokio::time::timeout(Duration::from_secs(2), backend_closed.recv()).await.expect("backend side kept open");
}

/// A TCP backend that never writes; reports what it read once the proxy closes.
async fn silent_tcp_backend() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got).await;
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

/// Answers 200 at once, then one body chunk every 300 ms, 10 in all (3 s).
async fn slow_body_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let chunks = futures::stream::unfold(0, |i| async move {
                        if i == 10 {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"chunk\n"))), i + 1))
                    });
                    Ok::<_, Infallible>(hyper::Response::new(StreamBody::new(chunks)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn backend_target(name: &str, protocol: AppProtocol, endpoints: Vec<SocketAddr>) -> BackendTarget {
    BackendTarget::Service(ServiceBackend {
        service: ServiceRef::new("server-ns", name),
        port: 80,
        protocol,
        endpoints: Arc::new(EndpointSet::new(endpoints)),
    })
}

/// Routes with one rule forwarding everything to `backend`.
fn one_rule(backend: BackendTarget, timeouts: Timeouts, mirrors: Vec<Mirror>) -> RouteSet {
    let rule = Arc::new(Rule {
        meta: RouteMeta {
            route: Arc::new(RouteRef { kind: RouteKind::Http, namespace: "server-ns".into(), name: "route".into() }),
            created: Some(0),
        },
        index: 0,
        name: None,
        matches: Vec::new(),
        filters: RuleFilters { mirrors, ..RuleFilters::default() },
        action: RuleAction::Forward(Forward {
            rewrite: None,
            backends: BackendSet::new(vec![WeightedBackend { weight: 1, target: backend, filters: BackendFilters::default() }]),
        }),
        timeouts,
        retry: None,
    });
    RouteSet { producer: Some(Arc::new(RouteList::new(RouteKind::Http, vec![rule]))), ..RouteSet::default() }
}

#[tokio::test]
async fn the_request_timeout_aborts_a_response_body_still_streaming() {
    let backend = slow_body_backend().await;
    let timeouts = Timeouts { request: Some(Duration::from_secs(1)), backend_request: None };
    let routes = one_rule(backend_target("slow", AppProtocol::Http, vec![backend]), timeouts, Vec::new());
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], routes))).await;

    // HTTP/1.1: the head arrives in time, the body is cut and the client sees an error.
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get("/").header("host", "svc").body(Empty::<Bytes>::new()).unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await;
    assert!(body.is_err(), "a truncated body must not look complete: {body:?}");
    let elapsed = started.elapsed();
    assert!((Duration::from_millis(900)..Duration::from_millis(2900)).contains(&elapsed), "{elapsed:?}");

    // HTTP/2: the stream is reset.
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get("http://svc/").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.into_body().collect().await.is_err(), "HTTP/2 stream not reset at the deadline");
}

#[tokio::test]
async fn a_response_body_within_the_request_timeout_is_complete() {
    let backend = slow_body_backend().await;
    let timeouts = Timeouts { request: Some(Duration::from_secs(20)), backend_request: Some(Duration::from_secs(15)) };
    let routes = one_rule(backend_target("slow", AppProtocol::Http, vec![backend]), timeouts, Vec::new());
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], routes))).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get("/").header("host", "svc").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 60);
}

/// An HTTP/2-only backend (no HTTP/1.1) answering with the request's version.
async fn h2_only_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let text = format!("version={:?}\n", req.version());
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn h2c_on_an_http_port_reaches_an_http2_only_backend() {
    let backend = h2_only_backend().await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::post("http://svc/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(field(&String::from_utf8_lossy(&body), "version"), Some("HTTP/2.0"));
}

#[tokio::test]
async fn rapid_reset_flood_gets_goaway() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::H2c, vec![backend], RouteSet::default()))).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut flood = h2_frames::client_start();
    // CVE-2023-44487: open a stream and cancel it at once, again and again.
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(h2_frames::HEADERS, h2_frames::END_HEADERS | h2_frames::END_STREAM, id, &h2_frames::get_request_block()));
        flood.extend(frame(h2_frames::RST_STREAM, 0, id, &h2_frames::CANCEL.to_be_bytes()));
    }
    let (mut reader, mut writer) = stream.split();
    let write = async {
        // The proxy may close before all is sent.
        let _ = writer.write_all(&flood).await;
    };
    let (_, seen) = tokio::join!(write, h2_frames::read_until_goaway(&mut reader, Duration::from_secs(10)));
    assert_eq!(seen.goaway, Some(h2_frames::ENHANCE_YOUR_CALM), "{seen:?}");
}

#[tokio::test]
async fn continuation_flood_gets_goaway_and_memory_stays_bounded() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::H2c, vec![backend], RouteSet::default()))).await;
    let rss_before = h2_frames::rss_kib();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(&h2_frames::client_start()).await.unwrap();
    // A HEADERS frame without END_HEADERS, then endless CONTINUATION frames (up to
    // 64 MiB) full of header fields: the block never ends.
    stream.write_all(&frame(h2_frames::HEADERS, 0, 1, &h2_frames::get_request_block())).await.unwrap();
    let field = h2_frames::literal_header(&[b'v'; 100]);
    let payload: Vec<u8> = field.iter().copied().cycle().take(field.len() * 150).collect();
    let continuation = frame(h2_frames::CONTINUATION, 0, 1, &payload);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        let mut sent = 0usize;
        while sent < 64 << 20 {
            if writer.write_all(&continuation).await.is_err() {
                break;
            }
            sent += continuation.len();
        }
        sent
    };
    let (sent, seen) = tokio::join!(write, h2_frames::read_until_goaway(&mut reader, Duration::from_secs(20)));
    assert!(seen.goaway.is_some() || seen.closed, "flood neither answered with GOAWAY nor closed: {seen:?}, sent {sent}");
    assert!(sent < 64 << 20, "the proxy kept reading the whole flood");
    let grown_mib = h2_frames::rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 48, "memory grew by {grown_mib} MiB during the flood (sent {sent} bytes)");
}

/// A mirror backend that reads requests and never answers; counts connections.
async fn hanging_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn mirrors_over_the_node_cap_are_dropped_and_slots_return_after_the_mirror_timeout() {
    let backend = http_backend("a").await;
    let (mirror_addr, mirror_connections) = hanging_backend().await;
    let mirror = Mirror { backend: backend_target("mirror", AppProtocol::Http, vec![mirror_addr]), fraction: 1.0 };
    let routes = one_rule(backend_target("svc", AppProtocol::Http, vec![backend]), Timeouts::default(), vec![mirror]);
    let options = ProxyOptions {
        mirrors: MirrorLimits { max_in_flight: 2, timeout: Duration::from_secs(1) },
        ..ProxyOptions::default()
    };
    let proxy = start_proxy_with(config_with(service_port(AppProtocol::Http, vec![backend], routes)), options).await;
    let get = |path: &'static str| async move {
        let answer = raw_exchange(proxy.addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    };
    for _ in 0..10 {
        get("/").await;
    }
    // Two mirrors hang at the backend; the other eight were dropped.
    assert_eq!(proxy.proxy.mirrors_dropped(), 8);
    let deadline = Instant::now() + Duration::from_secs(3);
    while mirror_connections.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mirror_connections.load(Ordering::SeqCst), 2);
    // After the mirror timeout the slots are free again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    get("/").await;
    assert_eq!(proxy.proxy.mirrors_dropped(), 8);
    let deadline = Instant::now() + Duration::from_secs(3);
    while mirror_connections.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mirror_connections.load(Ordering::SeqCst), 3);
}
