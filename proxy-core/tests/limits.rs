//! The caps on connections and in-flight requests, on loopback: a caller over its
//! request cap gets 503 naming the cap, over its connection cap a reset at accept; the
//! budgets return to zero whichever way a request or connection ends.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_proxy_core::config::{AppProtocol, RouteSet};
use ambit_proxy_core::limits::{Cap, Kind, LimitOptions};
use ambit_proxy_core::proxy::{Proxy, ProxyOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

fn options(connections_per_caller: usize, requests_per_caller: usize) -> ProxyOptions {
    let limits = LimitOptions {
        connections_per_caller: Cap::new(connections_per_caller),
        requests_per_caller: Cap::new(requests_per_caller),
        ..LimitOptions::default()
    };
    ProxyOptions { limits, ..ProxyOptions::default() }
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// GET with the backend delaying its answer by `delay_ms`: status and `x-ambit-limit`.
async fn get(sender: &mut SendRequest<Empty<Bytes>>, delay_ms: u64) -> (u16, Option<String>) {
    let req = hyper::Request::get("/").header("x-delay-ms", delay_ms.to_string()).body(Empty::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let limit = resp.headers().get("x-ambit-limit").map(|v| v.to_str().unwrap().to_owned());
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    (status, limit)
}

async fn wait_live(proxy: &Proxy, kind: Kind, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.budgets().node().live(kind) != want {
        assert!(Instant::now() < deadline, "{kind:?} live {} != {want}", proxy.budgets().node().live(kind));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn over_its_request_cap_a_caller_gets_503_naming_the_cap() {
    let backend = http_backend("a").await;
    let config = config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()));
    let running = start_proxy_with(config, options(0, 2)).await;
    let proxy = running.proxy.clone();

    let slow: Vec<_> = (0..2)
        .map(|_| {
            let addr = running.addr;
            tokio::spawn(async move { get(&mut connect(addr).await, 1500).await })
        })
        .collect();
    wait_live(&proxy, Kind::Requests, 2).await;
    let mut third = connect(running.addr).await;
    assert_eq!(get(&mut third, 0).await, (503, Some("caller_requests".to_owned())));
    for request in slow {
        assert_eq!(request.await.unwrap(), (200, None));
    }
    wait_live(&proxy, Kind::Requests, 0).await;
    assert_eq!(get(&mut third, 0).await, (200, None), "under the cap again");

    // A request abandoned by its caller mid-flight gives its unit back too.
    let mut abandoned = connect(running.addr).await;
    let pending = tokio::spawn(async move { get(&mut abandoned, 3000).await });
    wait_live(&proxy, Kind::Requests, 1).await;
    pending.abort();
    wait_live(&proxy, Kind::Requests, 0).await;
}

/// An HTTP/1.1 backend whose first answer sends its head and half its body, then the
/// rest only once `release` is notified; later answers are whole.
async fn half_body_backend(release: Arc<Notify>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = Arc::new(AtomicBool::new(true));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let (release, first) = (release.clone(), first.clone());
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello").await.unwrap();
                    if first.swap(false, Ordering::SeqCst) {
                        release.notified().await;
                    }
                    stream.write_all(b"world").await.unwrap();
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_request_keeps_its_unit_until_its_response_body_is_sent() {
    let release = Arc::new(Notify::new());
    let backend = half_body_backend(release.clone()).await;
    let config = config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()));
    let running = start_proxy_with(config, options(0, 1)).await;
    let proxy = running.proxy.clone();

    let mut streaming = connect(running.addr).await;
    let request = hyper::Request::get("/").body(Empty::new()).unwrap();
    let response = streaming.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    // The head is through and the body is not: the unit is still taken.
    assert_eq!(proxy.budgets().node().live(Kind::Requests), 1);
    let mut other = connect(running.addr).await;
    assert_eq!(get(&mut other, 0).await, (503, Some("caller_requests".to_owned())));

    release.notify_one();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"helloworld");
    wait_live(&proxy, Kind::Requests, 0).await;
    assert_eq!(get(&mut other, 0).await, (200, None), "the unit came back with the body's end");
}

#[tokio::test]
async fn over_its_connection_cap_a_caller_is_reset_at_accept() {
    let backend = http_backend("a").await;
    let config = config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()));
    let running = start_proxy_with(config, options(1, 0)).await;
    let proxy = running.proxy.clone();

    let mut held = connect(running.addr).await;
    assert_eq!(get(&mut held, 0).await, (200, None));
    let mut refused = TcpStream::connect(running.addr).await.unwrap();
    let _ = refused.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut buf)).await.expect("no answer");
    assert!(matches!(read, Err(_) | Ok(0)), "a caller at its cap must be reset, got {read:?}");
    assert_eq!(proxy.budgets().node().live(Kind::Connections), 1);

    drop(held);
    wait_live(&proxy, Kind::Connections, 0).await;
    assert_eq!(get(&mut connect(running.addr).await, 0).await, (200, None));
}
