//! RequestMirror's `percent` / `fraction` (GEP-3171) on the data path: the share of
//! requests mirrored follows the configured fraction (loopback, fixed origin).

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_proxy_core::config::{AppProtocol, EndpointSet, RouteSet, ServiceRef};
use ambit_proxy_core::routes::{
    BackendFilters, BackendSet, BackendTarget, Forward, Mirror, RouteKind, RouteList, RouteMeta, RouteRef, Rule,
    RuleAction, RuleFilters, ServiceBackend, Timeouts, WeightedBackend,
};
use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::{TcpListener, TcpStream};

/// A backend that counts the requests it answers.
async fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok")))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, count)
}

fn target(name: &str, endpoint: SocketAddr) -> BackendTarget {
    BackendTarget::Service(ServiceBackend {
        service: ServiceRef::new("server-ns", name),
        port: 80,
        protocol: AppProtocol::Http,
        endpoints: Arc::new(EndpointSet::new(vec![endpoint])),
    })
}

fn routes(backend: SocketAddr, mirror: Mirror) -> RouteSet {
    let rule = Arc::new(Rule {
        meta: RouteMeta {
            route: Arc::new(RouteRef { kind: RouteKind::Http, namespace: "server-ns".into(), name: "mirror".into() }),
            created: Some(0),
        },
        index: 0,
        name: None,
        matches: Vec::new(),
        filters: RuleFilters { mirrors: vec![mirror], ..RuleFilters::default() },
        action: RuleAction::Forward(Forward {
            rewrite: None,
            backends: BackendSet::new(vec![WeightedBackend {
                weight: 1,
                target: target("svc", backend),
                filters: BackendFilters::default(),
            }]),
        }),
        timeouts: Timeouts::default(),
        retry: None,
    });
    RouteSet { producer: Some(Arc::new(RouteList::new(RouteKind::Http, vec![rule]))), ..RouteSet::default() }
}

/// Waits until `count` stops changing for 300 ms (mirrors finish after their request).
async fn settled(count: &AtomicUsize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = count.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = count.load(Ordering::SeqCst);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn the_mirrored_share_follows_the_fraction() {
    const REQUESTS: usize = 400;
    let (backend, served) = counting_backend().await;
    let (mirror_addr, mirrored) = counting_backend().await;
    // 30%: expected 120 of 400 (standard deviation about 9); 80..=160 is more than 4 of them.
    let mirror = Mirror { backend: target("mirror", mirror_addr), fraction: 0.3 };
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], routes(backend, mirror)))).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for _ in 0..REQUESTS {
        let request = hyper::Request::get("/").header("host", "svc").body(Empty::<Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(served.load(Ordering::SeqCst), REQUESTS);
    let mirrored = settled(&mirrored).await;
    assert!((80..=160).contains(&mirrored), "{mirrored} of {REQUESTS} mirrored at 30%");
    assert_eq!(proxy.proxy.mirrors_dropped(), 0);
}
