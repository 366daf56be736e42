//! The proxy's data path on loopback: protocol handling, error mapping, TCP
//! passthrough and live configuration, with a fixed origin resolver (the kernel part is
//! covered by the agent's and the end-to-end tests).

mod support;

use std::time::{Duration, Instant};

use ambit_proxy_core::config::{AppProtocol, RouteSet};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn http1_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", "svc.server-ns").body(Empty::<Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn without_routes_requests_reach_the_service_endpoints() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await;
    let (status, body) = http1_get(proxy.addr, "/hello?x=1").await;
    assert_eq!(status, 200);
    assert_eq!(field(&body, "backend"), Some("a"));
    assert_eq!(field(&body, "path"), Some("/hello?x=1"));
    assert!(body.contains("header:host=svc.server-ns"), "{body}");
}

#[tokio::test]
async fn detected_http_on_a_port_without_app_protocol() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Detect, vec![backend], RouteSet::default()))).await;
    let (status, body) = http1_get(proxy.addr, "/").await;
    assert_eq!(status, 200);
    assert_eq!(field(&body, "backend"), Some("a"));
}

#[tokio::test]
async fn malformed_request_gets_400() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await;
    let answer = raw_exchange(proxy.addr, b"GET /\x01bad HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await;
    let big = "a".repeat(100 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let answer = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{:?}", &answer[..answer.len().min(80)]);
}

#[tokio::test]
async fn conflicting_content_length_and_transfer_encoding_cannot_smuggle() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await;
    // A classic CL.TE smuggling attempt after a good pipelined request: the good one is
    // answered, the ambiguous one gets 400 and the connection is closed, so neither it
    // nor the request hidden in its body reaches the backend.
    let request = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw_exchange(proxy.addr, request, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("/first"), "{answer:?}");
    assert!(!answer.contains("/smuggled"), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer:?}");
    let second = &answer[answer.rfind("HTTP/1.1 ").unwrap()..];
    assert!(second.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(second.to_ascii_lowercase().contains("connection: close"), "{answer:?}");

    // Several differing Content-Length values: 400 as well.
    let request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 12\r\n\r\nabcGET /smuggled HTTP/1.1\r\n\r\n";
    let answer = raw_exchange(proxy.addr, request, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer:?}");
}

#[tokio::test]
async fn a_refused_head_cut_across_reads_gets_400_too() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // The first part of the ambiguous head arrives with a good request; once that one is
    // answered, the server has read the part too.
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-").await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("/first") {
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    stream.write_all(b"Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer:?}");
    assert!(!answer.contains("/smuggled"), "{answer:?}");
    assert!(answer[answer.rfind("HTTP/1.1 ").unwrap()..].starts_with("HTTP/1.1 400"), "{answer:?}");
}

#[tokio::test]
async fn pipelined_requests_with_bodies_are_all_answered_in_order() {
    let backend = http_backend("a").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await;
    let request = b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(proxy.addr, request, Duration::from_secs(2)).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 3, "{answer:?}");
    let (one, two, three) = (answer.find("path=/1"), answer.find("path=/2"), answer.find("path=/3"));
    assert!(one.is_some() && one < two && two < three, "{answer:?}");
}

#[tokio::test]
async fn server_first_protocol_passes_through_with_half_close() {
    let backend = banner_backend("220 ready\r\n").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Detect, vec![backend], RouteSet::default()))).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // The client sends nothing first: detection must give up and pass the banner through.
    let mut banner = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut banner)).await.unwrap().unwrap();
    assert_eq!(&banner, b"220 ready\r\n");
    stream.write_all(b"ping").await.unwrap();
    stream.shutdown().await.unwrap(); // half-close: the backend sees EOF and answers "bye"
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert_eq!(rest, b"pingbye");
}

#[tokio::test]
async fn unreachable_backend_resets_tcp_client_promptly() {
    let dead = dead_address().await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Tcp, vec![dead], RouteSet::default()))).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let result = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await.expect("client hung");
    match result {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn unreachable_backend_gives_http_503() {
    let dead = dead_address().await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![dead], RouteSet::default()))).await;
    let (status, _) = http1_get(proxy.addr, "/").await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_proxied_over_http2() {
    let backend = http_backend("h2").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::H2c, vec![backend], RouteSet::default()))).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut bodies = Vec::new();
    for i in 0..3 {
        let req = hyper::Request::get(format!("http://svc.server-ns/h2/{i}")).body(Empty::<Bytes>::new()).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        bodies.push(String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned());
    }
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(field(body, "version"), Some("HTTP/2.0"), "{body}");
        assert_eq!(field(body, "path"), Some(format!("/h2/{i}").as_str()));
        assert_eq!(field(body, "authority"), Some("svc.server-ns"));
    }
}

#[tokio::test]
async fn websocket_upgrade_is_passed_through() {
    // A backend that accepts the upgrade and then echoes bytes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(String::from_utf8_lossy(&head).to_ascii_lowercase().contains("upgrade: websocket"));
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
    });
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await;
    let mut stream = websocket_through(proxy.addr).await;
    stream.write_all(b"frame-bytes").await.unwrap();
    let mut echoed = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"frame-bytes");
}

#[tokio::test]
async fn configuration_change_applies_to_an_open_keep_alive_connection() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![a], RouteSet::default()))).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut backends = Vec::new();
    for step in 0..2 {
        if step == 1 {
            proxy.config.store(config_with(service_port(AppProtocol::Http, vec![b], RouteSet::default())));
        }
        let req = hyper::Request::get("/").header("host", "svc").body(Empty::<Bytes>::new()).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        backends.push(field(&String::from_utf8_lossy(&body), "backend").map(str::to_owned));
    }
    assert_eq!(backends, [Some("a".to_owned()), Some("b".to_owned())]);
}
