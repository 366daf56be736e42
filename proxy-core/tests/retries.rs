//! GEP-1731 retries through the real data path (loopback, fixed origin): bodies
//! replayed over HTTP/1.1 and HTTP/2, connection errors retried on the next endpoint,
//! gRPC trailers-only errors retried by their status, the `request` timeout spanning
//! the attempts, and the retry budget bounding a storm.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambit_proxy_core::config::{AppProtocol, EndpointSet, RouteSet, ServiceRef};
use ambit_proxy_core::routes::{
    BackendFilters, BackendSet, BackendTarget, Forward, RetryCodes, RetryPolicy, RouteKind, RouteList, RouteMeta,
    RouteRef, Rule, RuleAction, RuleFilters, ServiceBackend, Timeouts, WeightedBackend,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::{TcpListener, TcpStream};

/// A backend that fails its first `failures` requests (503, or for gRPC a trailers-only
/// UNAVAILABLE), after `delay` each, then answers 200 with the body it received. It
/// records every body it received.
struct Flaky {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

async fn flaky(failures: usize, delay: Duration) -> Flaky {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(AtomicUsize::new(0));
    let recorded = bodies.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, recorded) = (seen.clone(), recorded.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, recorded) = (seen.clone(), recorded.clone());
                    async move {
                        let grpc = req.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        recorded.lock().unwrap().push(body.clone());
                        let failing = seen.fetch_add(1, Ordering::SeqCst) < failures;
                        if failing {
                            tokio::time::sleep(delay).await;
                        }
                        let response = match (failing, grpc) {
                            (true, true) => Response::builder().header("grpc-status", "14").body(Full::new(Bytes::new())),
                            (true, false) => Response::builder().status(503).body(Full::new(Bytes::from_static(b"down"))),
                            (false, _) => Response::builder().body(Full::new(body)),
                        };
                        Ok::<_, Infallible>(response.unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Flaky { addr, bodies }
}

impl Flaky {
    fn received(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }
}

fn policy(attempts: u32, codes: &[i64]) -> RetryPolicy {
    RetryPolicy { attempts, backoff: Duration::from_millis(5), codes: RetryCodes::new(codes.iter().copied()).unwrap() }
}

/// Routes with one rule forwarding everything to `endpoints` under `retry`.
fn retry_rule(endpoints: Vec<SocketAddr>, timeouts: Timeouts, retry: RetryPolicy) -> RouteSet {
    let backend = BackendTarget::Service(ServiceBackend {
        service: ServiceRef::new("server-ns", "flaky"),
        port: 80,
        protocol: AppProtocol::Http,
        endpoints: Arc::new(EndpointSet::new(endpoints)),
    });
    let rule = Arc::new(Rule {
        meta: RouteMeta {
            route: Arc::new(RouteRef { kind: RouteKind::Http, namespace: "server-ns".into(), name: "route".into() }),
            created: Some(0),
        },
        index: 0,
        name: None,
        matches: Vec::new(),
        filters: RuleFilters::default(),
        action: RuleAction::Forward(Forward {
            rewrite: None,
            backends: BackendSet::new(vec![WeightedBackend { weight: 1, target: backend, filters: BackendFilters::default() }]),
        }),
        timeouts,
        retry: Some(retry),
    });
    RouteSet { producer: Some(Arc::new(RouteList::new(RouteKind::Http, vec![rule]))), ..RouteSet::default() }
}

async fn proxy_for(endpoints: Vec<SocketAddr>, timeouts: Timeouts, retry: RetryPolicy) -> RunningProxy {
    let routes = retry_rule(endpoints.clone(), timeouts, retry);
    start_proxy(config_with(service_port(AppProtocol::Http, endpoints, routes))).await
}

async fn http1(proxy: &RunningProxy) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

async fn http2(proxy: &RunningProxy) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

fn post(uri: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(uri).header("host", "svc").body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
}

#[tokio::test]
async fn a_request_body_is_replayed_to_each_attempt_over_http1_and_http2() {
    for version in ["http1", "http2"] {
        let backend = flaky(2, Duration::ZERO).await;
        let proxy = proxy_for(vec![backend.addr], Timeouts::default(), policy(2, &[503])).await;
        let (mut h1, mut h2) = (http1(&proxy).await, http2(&proxy).await);
        let response = match version {
            "http1" => h1.send_request(post("/", "replay-me")).await.unwrap(),
            _ => h2.send_request(post("http://svc/", "replay-me")).await.unwrap(),
        };
        assert_eq!(response.status(), 200, "{version}");
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "replay-me", "{version}");
        assert_eq!(backend.received(), vec![Bytes::from_static(b"replay-me"); 3], "{version}");
    }
}

#[tokio::test]
async fn retries_stop_at_attempts_and_unlisted_codes_are_final() {
    let backend = flaky(10, Duration::ZERO).await;
    let proxy = proxy_for(vec![backend.addr], Timeouts::default(), policy(2, &[503])).await;
    let mut sender = http1(&proxy).await;
    let response = sender.send_request(post("/", "x")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(backend.received().len(), 3, "the first attempt and 2 retries");

    let backend = flaky(1, Duration::ZERO).await;
    let proxy = proxy_for(vec![backend.addr], Timeouts::default(), policy(2, &[500])).await;
    let mut sender = http1(&proxy).await;
    let response = sender.send_request(post("/", "x")).await.unwrap();
    assert_eq!(response.status(), 503, "503 is not listed");
    assert_eq!(backend.received().len(), 1);
}

#[tokio::test]
async fn a_connection_error_is_retried_on_the_next_endpoint_without_codes() {
    let backend = flaky(0, Duration::ZERO).await;
    // A port nothing listens on (bound, then closed).
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let proxy = proxy_for(vec![dead, backend.addr], Timeouts::default(), policy(1, &[])).await;
    let mut sender = http1(&proxy).await;
    for _ in 0..4 {
        let response = sender.send_request(post("/", "x")).await.unwrap();
        assert_eq!(response.status(), 200, "round robin reaches the dead endpoint every other time");
        response.into_body().collect().await.unwrap();
    }
}

#[tokio::test]
async fn grpc_unavailable_is_retried_as_503() {
    let backend = flaky(1, Duration::ZERO).await;
    let proxy = proxy_for(vec![backend.addr], Timeouts::default(), policy(1, &[503])).await;
    let request = Request::post("http://svc/echo.Echo/Echo")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x01a")))
        .unwrap();
    let mut sender = http2(&proxy).await;
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("grpc-status").is_none(), "the retry's answer, not the failure");
    assert_eq!(backend.received().len(), 2);
}

#[tokio::test]
async fn the_request_timeout_spans_every_attempt() {
    // Each attempt fails after 300 ms; 10 retries would take over 3 s.
    let backend = flaky(100, Duration::from_millis(300)).await;
    let timeouts = Timeouts { request: Some(Duration::from_secs(1)), backend_request: None };
    let proxy = proxy_for(vec![backend.addr], timeouts, policy(10, &[503])).await;
    let mut sender = http1(&proxy).await;
    let started = Instant::now();
    let response = sender.send_request(post("/", "x")).await.unwrap();
    let took = started.elapsed();
    assert!(response.status() == 503 || response.status() == 504, "{}", response.status());
    assert!(took < Duration::from_millis(1800), "answered after {took:?}");
    assert!(backend.received().len() <= 4, "{} attempts in 1 s", backend.received().len());
}

#[tokio::test]
async fn the_budget_bounds_a_retry_storm() {
    let backend = flaky(usize::MAX, Duration::ZERO).await;
    let proxy = proxy_for(vec![backend.addr], Timeouts::default(), policy(3, &[503])).await;
    const REQUESTS: usize = 200;
    let started = Instant::now();
    let mut sender = http1(&proxy).await;
    for _ in 0..REQUESTS {
        let response = sender.send_request(post("/", "x")).await.unwrap();
        assert_eq!(response.status(), 503);
        response.into_body().collect().await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64().ceil() + 1.0;
    let attempts = backend.received().len();
    // Without a budget: 800. With it: 20 % of the requests plus 10 per second.
    let allowed = REQUESTS as f64 * 1.2 + 10.0 * seconds;
    assert!((attempts as f64) <= allowed, "{attempts} attempts for {REQUESTS} requests in {seconds} s (budget {allowed})");
    assert!(attempts > REQUESTS, "some retries were made");
}
