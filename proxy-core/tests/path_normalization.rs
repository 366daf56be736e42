//! Request paths are normalised before routing, and the backend receives the path that
//! was matched (loopback proxy, fixed origin resolver).

mod support;

use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::config::{AppProtocol, EndpointSet, RouteSet, ServiceRef};
use ambit_proxy_core::routes::{
    BackendFilters, BackendSet, BackendTarget, Forward, PathMatch, RouteKind, RouteList, RouteMatch, RouteMeta,
    RouteRef, Rule, RuleAction, RuleFilters, ServiceBackend, Timeouts, WeightedBackend,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::TcpStream;

/// A producer HTTPRoute rule: requests under `prefix` go to `backend`.
fn prefix_rule(name: &str, prefix: &str, backend: std::net::SocketAddr) -> Arc<Rule> {
    let target = BackendTarget::Service(ServiceBackend {
        service: ServiceRef::new("server-ns", name),
        port: 80,
        protocol: AppProtocol::Http,
        endpoints: Arc::new(EndpointSet::new(vec![backend])),
    });
    Arc::new(Rule {
        meta: RouteMeta {
            route: Arc::new(RouteRef { kind: RouteKind::Http, namespace: "server-ns".into(), name: name.into() }),
            created: Some(0),
        },
        index: 0,
        name: None,
        matches: vec![RouteMatch { path: Some(PathMatch::Prefix(prefix.into())), ..Default::default() }],
        filters: RuleFilters::default(),
        action: RuleAction::Forward(Forward {
            rewrite: None,
            backends: BackendSet::new(vec![WeightedBackend { weight: 1, target, filters: BackendFilters::default() }]),
        }),
        timeouts: Timeouts::default(),
        retry: None,
    })
}

/// A proxy whose Service has two routes: `/public` to backend "public" and `/admin`
/// to backend "admin".
async fn proxy_with_public_and_admin() -> RunningProxy {
    proxy_with_public_and_admin_on(AppProtocol::Http).await
}

async fn proxy_with_public_and_admin_on(protocol: AppProtocol) -> RunningProxy {
    let public = http_backend("public").await;
    let admin = http_backend("admin").await;
    let rules = vec![prefix_rule("public", "/public", public), prefix_rule("admin", "/admin", admin)];
    let routes = RouteSet { producer: Some(Arc::new(RouteList::new(RouteKind::Http, rules))), ..Default::default() };
    start_proxy(config_with(service_port(protocol, vec![public], routes))).await
}

/// Sends one raw HTTP/1.1 request for `target` and returns the answer.
async fn get(proxy: &RunningProxy, target: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: svc.server-ns\r\nConnection: close\r\n\r\n");
    raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(5)).await
}

fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

#[tokio::test]
async fn dot_segments_cannot_escape_a_prefix_route() {
    let proxy = proxy_with_public_and_admin().await;
    let answer = get(&proxy, "/public/../admin").await;
    assert_eq!(status(&answer), "200", "{answer}");
    assert_eq!(field(&answer, "backend"), Some("admin"), "{answer}");
    assert_eq!(field(&answer, "path"), Some("/admin"), "{answer}");

    // Encoded dots are dots; repeated slashes merge; the query string is untouched.
    let answer = get(&proxy, "/public/%2e%2E//admin//x/./y?q=/../%2e").await;
    assert_eq!(field(&answer, "backend"), Some("admin"), "{answer}");
    assert_eq!(field(&answer, "path"), Some("/admin/x/y?q=/../%2e"), "{answer}");

    // A backslash is a slash, as in Envoy's `normalize_path`.
    let answer = get(&proxy, "/public\\..\\admin").await;
    assert_eq!(field(&answer, "backend"), Some("admin"), "{answer}");
    assert_eq!(field(&answer, "path"), Some("/admin"), "{answer}");
}

#[tokio::test]
async fn normalised_paths_reach_the_backend_and_plain_paths_are_untouched() {
    let proxy = proxy_with_public_and_admin().await;
    for (sent, received) in [
        ("/public/one/two", "/public/one/two"),
        ("/public/%7Euser/%41", "/public/~user/A"),
        ("/public/a%2fb", "/public/a%2Fb"),
        ("/public/x/..", "/public/"),
        ("/../../public", "/public"),
    ] {
        let answer = get(&proxy, sent).await;
        assert_eq!(field(&answer, "backend"), Some("public"), "{sent}: {answer}");
        assert_eq!(field(&answer, "path"), Some(received), "{sent}: {answer}");
    }
}

#[tokio::test]
async fn encoded_slashes_are_not_separators() {
    let proxy = proxy_with_public_and_admin().await;
    // `..%2Fadmin` is one segment named `..%2Fadmin`, not a step up: it stays under /public.
    let answer = get(&proxy, "/public/..%2Fadmin").await;
    assert_eq!(field(&answer, "backend"), Some("public"), "{answer}");
    assert_eq!(field(&answer, "path"), Some("/public/..%2Fadmin"), "{answer}");
    // `/public%2F..` is no `/public` prefix at all.
    let answer = get(&proxy, "/public%2F..%2Fadmin").await;
    assert_eq!(status(&answer), "404", "{answer}");
}

#[tokio::test]
async fn invalid_percent_encoding_gets_400() {
    let proxy = proxy_with_public_and_admin().await;
    for target in ["/public/%zz", "/public/%4", "/public/a%"] {
        let answer = get(&proxy, target).await;
        assert_eq!(status(&answer), "400", "{target}: {answer}");
        assert!(answer.contains("invalid percent-encoding"), "{target}: {answer}");
    }
}

#[tokio::test]
async fn http2_paths_are_normalised_too() {
    let proxy = proxy_with_public_and_admin_on(AppProtocol::H2c).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get("http://svc.server-ns/public/%2E%2E/admin/").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = String::from_utf8_lossy(&response.into_body().collect().await.unwrap().to_bytes()).into_owned();
    assert_eq!(field(&body, "backend"), Some("admin"), "{body}");
    assert_eq!(field(&body, "path"), Some("/admin/"), "{body}");
}
