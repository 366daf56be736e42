//! A draining proxy (an upgrade's old agent, after SIGTERM) and the connections it had
//! accepted but not yet read a request from: the first request is still answered
//! (with `Connection: close`), and a connection that never sends one is closed once
//! the head timeout has passed, so the drain cannot hang on it.

mod support;

use std::time::{Duration, Instant};

use ambit_proxy_core::config::{AppProtocol, RouteSet};
use ambit_proxy_core::limits::Kind;
use ambit_proxy_core::proxy::{ConnectionTimeouts, Proxy, ProxyOptions};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn accepted(proxy: &Proxy, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.budgets().node().live(Kind::Connections) != want {
        assert!(Instant::now() < deadline, "the proxy did not accept the connection");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn draining_proxy(request_head: Duration) -> RunningProxy {
    let backend = http_backend("a").await;
    let config = config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default()));
    let timeouts = ConnectionTimeouts { request_head, ..ConnectionTimeouts::default() };
    start_proxy_with(config, ProxyOptions { timeouts, ..ProxyOptions::default() }).await
}

#[tokio::test]
async fn a_connection_accepted_before_the_drain_gets_its_first_request_answered() {
    let running = draining_proxy(Duration::from_secs(10)).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    accepted(&running.proxy, 1).await;
    running.shutdown.cancel();
    // The client is slow to send: the drain has begun by now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy closes the connection after answering")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("path=/first"), "the backend saw the request: {answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_head_timeout_while_draining() {
    let running = draining_proxy(Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    accepted(&running.proxy, 1).await;
    let began = Instant::now();
    running.shutdown.cancel();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the drain closes a connection that never sends a request")
        .unwrap();
    assert!(answer.is_empty(), "nothing is sent: {:?}", String::from_utf8_lossy(&answer));
    assert!(began.elapsed() >= Duration::from_millis(250), "closed after the head timeout, not at once: {:?}", began.elapsed());
    accepted(&running.proxy, 0).await;
}
