//! The CORS filter on the data path (loopback, fixed origin), over HTTP/1.1 and HTTP/2:
//! preflights are answered by the proxy and never reach the backend; other requests are
//! forwarded and their responses (local replies included) get the CORS headers for
//! allowed origins only.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use ambit_proxy_core::config::{AppProtocol, EndpointSet, RouteSet, ServiceRef};
use ambit_proxy_core::routes::{
    BackendFilters, BackendSet, BackendTarget, CorsConfig, CorsPolicy, Forward, HeaderModifier, RouteKind, RouteList,
    RouteMeta, RouteRef, Rule, RuleAction, RuleFilters, ServiceBackend, Timeouts, WeightedBackend,
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::TcpStream;

fn policy() -> CorsPolicy {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    CorsPolicy::new(&CorsConfig {
        allow_origins: strings(&["https://www.foo.com", "https://*.bar.com"]),
        allow_methods: strings(&["GET", "PUT"]),
        allow_headers: strings(&["x-a"]),
        expose_headers: strings(&["x-b"]),
        allow_credentials: true,
        max_age: Some(60),
    })
    .unwrap()
}

/// One rule with the CORS filter and a ResponseHeaderModifier, forwarding to `endpoints`.
fn routes(endpoints: Vec<SocketAddr>) -> RouteSet {
    let backend = BackendTarget::Service(ServiceBackend {
        service: ServiceRef::new("server-ns", "svc"),
        port: 80,
        protocol: AppProtocol::Http,
        endpoints: Arc::new(EndpointSet::new(endpoints)),
    });
    let modifier = HeaderModifier {
        set: vec![(HeaderName::from_static("x-rule"), HeaderValue::from_static("1"))],
        ..HeaderModifier::default()
    };
    let rule = Arc::new(Rule {
        meta: RouteMeta {
            route: Arc::new(RouteRef { kind: RouteKind::Http, namespace: "server-ns".into(), name: "cors".into() }),
            created: Some(0),
        },
        index: 0,
        name: None,
        matches: Vec::new(),
        filters: RuleFilters { cors: Some(policy()), response_headers: Some(modifier), ..RuleFilters::default() },
        action: RuleAction::Forward(Forward {
            rewrite: None,
            backends: BackendSet::new(vec![WeightedBackend { weight: 1, target: backend, filters: BackendFilters::default() }]),
        }),
        timeouts: Timeouts::default(),
        retry: None,
    });
    RouteSet { producer: Some(Arc::new(RouteList::new(RouteKind::Http, vec![rule]))), ..RouteSet::default() }
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends one request through the proxy with HTTP/1.1 or HTTP/2 (prior knowledge).
async fn send(proxy: SocketAddr, h2: bool, method: Method, headers: &[(&str, &str)]) -> Reply {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let mut builder = hyper::Request::builder().method(method);
    builder = if h2 { builder.uri("http://svc/cors") } else { builder.uri("/cors").header("host", "svc") };
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Empty::<Bytes>::new()).unwrap();
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = String::from_utf8_lossy(&response.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Reply { status, headers, body }
}

#[tokio::test]
async fn preflights_are_answered_by_the_proxy() {
    let backend = http_backend("echo").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], routes(vec![backend])))).await;
    for h2 in [false, true] {
        let asked = [("origin", "https://a.bar.com"), ("access-control-request-method", "PUT"), ("access-control-request-headers", "x-a")];
        let reply = send(proxy.addr, h2, Method::OPTIONS, &asked).await;
        assert_eq!(reply.status, 200, "h2={h2}");
        assert!(reply.body.is_empty(), "the backend answered: {}", reply.body);
        assert_eq!(reply.get("access-control-allow-origin"), Some("https://a.bar.com"));
        assert_eq!(reply.get("access-control-allow-methods"), Some("GET, PUT"));
        assert_eq!(reply.get("access-control-allow-headers"), Some("x-a"));
        assert_eq!(reply.get("access-control-expose-headers"), Some("x-b"));
        assert_eq!(reply.get("access-control-allow-credentials"), Some("true"));
        assert_eq!(reply.get("access-control-max-age"), Some("60"));
        assert_eq!(reply.get("vary"), Some("Origin"));
        assert_eq!(reply.get("x-rule"), Some("1"), "the rule's ResponseHeaderModifier applies");

        let denied = send(proxy.addr, h2, Method::OPTIONS, &[("origin", "https://evil.example"), ("access-control-request-method", "PUT")]).await;
        assert_eq!(denied.status, 200);
        assert!(denied.body.is_empty(), "the backend answered: {}", denied.body);
        assert!(denied.headers.keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", denied.headers);
    }
}

#[tokio::test]
async fn other_requests_are_forwarded_with_cors_headers_for_allowed_origins() {
    let backend = http_backend("echo").await;
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![backend], routes(vec![backend])))).await;
    for h2 in [false, true] {
        let reply = send(proxy.addr, h2, Method::GET, &[("origin", "https://www.foo.com")]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(field(&reply.body, "backend"), Some("echo"));
        assert_eq!(field(&reply.body, "header:origin"), Some("https://www.foo.com"), "Origin reaches the backend");
        assert_eq!(reply.get("access-control-allow-origin"), Some("https://www.foo.com"));
        assert_eq!(reply.get("access-control-allow-credentials"), Some("true"));
        assert_eq!(reply.get("access-control-expose-headers"), Some("x-b"));
        assert_eq!(reply.get("access-control-max-age"), None);

        // OPTIONS without Access-Control-Request-Method is an ordinary request.
        let options = send(proxy.addr, h2, Method::OPTIONS, &[("origin", "https://www.foo.com")]).await;
        assert_eq!(field(&options.body, "method"), Some("OPTIONS"));
        assert_eq!(options.get("access-control-allow-origin"), Some("https://www.foo.com"));

        let denied = send(proxy.addr, h2, Method::GET, &[("origin", "https://www.foo.com.evil.example")]).await;
        assert_eq!(field(&denied.body, "backend"), Some("echo"));
        assert!(denied.headers.keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", denied.headers);
        assert_eq!(denied.get("vary"), Some("Origin"));
    }
}

#[tokio::test]
async fn local_replies_get_the_cors_headers_too() {
    let proxy = start_proxy(config_with(service_port(AppProtocol::Http, vec![], routes(vec![])))).await;
    for h2 in [false, true] {
        let reply = send(proxy.addr, h2, Method::GET, &[("origin", "https://www.foo.com")]).await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.get("access-control-allow-origin"), Some("https://www.foo.com"));
    }
}
