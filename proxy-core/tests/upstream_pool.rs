//! Upstream connection reuse as the metrics show it: requests over downstream
//! keep-alive connections reuse pooled upstream connections, and
//! `ambit_upstream_connects_total` counts the connections that had to be opened.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::config::{AppProtocol, ConfigHandle, RouteSet};
use ambit_proxy_core::metrics::ProxyMetrics;
use ambit_proxy_core::proxy::{Proxy, ProxyOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use support::*;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The value of the sample `name` (with its labels) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn keep_alive_requests_reuse_upstream_connections_and_misses_are_counted() {
    let backend = http_backend("a").await;
    let mut registry = Registry::default();
    let metrics = ProxyMetrics::register(&mut registry);
    let config = ConfigHandle::new(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default())));
    let proxy = Proxy::with_metrics(config, Arc::new(FixedOrigin), ProxyOptions::default(), Some(metrics));
    let listener = ambit_proxy_core::proxy::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(proxy.serve(listener, shutdown.clone(), Duration::from_secs(1)));

    // Two downstream connections, one after the other, 10 requests each.
    for _ in 0..2 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        for _ in 0..10 {
            sender.ready().await.unwrap();
            let request = hyper::Request::get("/").header("host", "svc").body(Empty::<Bytes>::new()).unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        }
    }
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let requests: f64 = text.lines().filter(|l| l.starts_with("ambit_requests_total{")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    assert_eq!(requests, 20.0, "{text}");
    assert_eq!(sample(&text, r#"ambit_upstream_connects_total{kind="http1"}"#), Some(1.0), "one upstream connection for 20 requests: {text}");
    assert_eq!(sample(&text, r#"ambit_upstream_connects_total{kind="http2"}"#), Some(0.0), "{text}");
    shutdown.cancel();
}
