//! Idle HTTP/1.1 keep-alive connections are parked (their HTTP state dropped) and
//! resumed when the client sends again: the client sees one ordinary keep-alive
//! connection (loopback, fixed origin).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ambit_proxy_core::config::{AppProtocol, RouteSet};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longer than a connection takes to be parked (a second of quiet, noticed up to half
/// a second late).
const PARKED: Duration = Duration::from_millis(2500);

/// Reads one response with a Content-Length body; returns its head and body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await.expect("response in time").unwrap();
        assert_eq!(n, 1, "connection closed after {:?}", String::from_utf8_lossy(&bytes));
        bytes.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&bytes).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .expect("content-length");
    let mut body = vec![0u8; length];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut body)).await.expect("body in time").unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

async fn proxy_to(backend: SocketAddr) -> RunningProxy {
    start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()))).await
}

#[tokio::test]
async fn a_parked_connection_serves_pipelined_requests_and_bodies() {
    let proxy = proxy_to(http_backend("a").await).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(field(&body, "path"), Some("/first"));

    tokio::time::sleep(PARKED).await;
    // Two requests in one write, the second with a body, then a third after it.
    stream
        .write_all(b"GET /second HTTP/1.1\r\nHost: svc\r\n\r\nPOST /third HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    for (path, sent) in [("/second", ""), ("/third", "hello")] {
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("connection: close"), "{head}");
        assert_eq!(field(&body, "path"), Some(path), "{body}");
        assert_eq!(field(&body, "body"), Some(sent), "{body}");
    }

    tokio::time::sleep(PARKED).await;
    stream.write_all(b"GET /fourth HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    let (_, body) = read_response(&mut stream).await;
    assert_eq!(field(&body, "path"), Some("/fourth"));
}

#[tokio::test]
async fn a_head_that_wakes_a_parked_connection_in_pieces_is_served() {
    let proxy = proxy_to(http_backend("a").await).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    read_response(&mut stream).await;
    tokio::time::sleep(PARKED).await;
    stream.write_all(b"GET /sec").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(b"ond HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(field(&body, "path"), Some("/second"));
}

#[tokio::test]
async fn an_ambiguously_framed_request_after_parking_still_gets_400() {
    let proxy = proxy_to(http_backend("a").await).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    read_response(&mut stream).await;
    tokio::time::sleep(PARKED).await;
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
}

/// A backend that answers plain requests with `ok` on a kept-alive connection and
/// accepts a WebSocket upgrade, then echoes.
async fn upgrade_or_ok_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    if !String::from_utf8_lossy(&head).to_ascii_lowercase().contains("upgrade: websocket") {
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
                        continue;
                    }
                    s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).await.unwrap();
                    s.write_all(&buf[..n]).await.unwrap();
                    return;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_parked_connection_can_be_upgraded() {
    let proxy = proxy_to(upgrade_or_ok_backend().await).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    tokio::time::sleep(PARKED).await;
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream.write_all(b"frame-bytes").await.unwrap();
    let mut echoed = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"frame-bytes");
}

/// hyper's buffer limit applies only to a head still incomplete: one read whole (as
/// served here, in rounds) is held to the limit by the head size limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_the_limit_gets_431_even_when_read_whole() {
    for protocol in [AppProtocol::Http, AppProtocol::Detect] {
        let backend = http_backend("a").await;
        let proxy = start_proxy(config_with(service_port(protocol, vec![backend], RouteSet::default()))).await;
        let big = format!("GET / HTTP/1.1\r\nHost: echo\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024));
        let answer = raw_exchange(proxy.addr, big.as_bytes(), Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{protocol:?} {:?}", &answer[..answer.len().min(100)]);
    }
}
