//! AuthorizationPolicy enforcement on the callee's node, through real HBONE (mutual
//! TLS 1.3 from an outbound pool to a node proxy's inbound server on loopback): L4
//! rules per stream (403 on the CONNECT), HTTP rules per request (403), path
//! normalisation, and the decision metrics.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::authz::{Action, Rule};
use ambit_proxy_core::config::ProxyConfig;
use ambit_proxy_core::hbone::{CallContext, HboneMetrics, HbonePool, PoolOptions, TunnelError, TunnelKey, TunnelStream};
use ambit_proxy_core::identity::SpiffeId;
use ambit_proxy_core::proxy::{NodeSockets, Source};
use http::StatusCode;
use support::authz_fixtures::*;
use support::mesh_pki::{TestCa, TestMeshTls};
use support::{field, http_backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

/// An echo "pod" on `ip`.
async fn echo_pod(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

struct World {
    ca: TestCa,
    server: SpiffeId,
    callee: Node,
    pod: SocketAddr,
    /// The callers' pools, kept while the test runs (a dropped pool closes its tunnels).
    pools: std::sync::Mutex<Vec<Arc<HbonePool>>>,
}

/// A callee node on 127.0.0.2 hosting `pod` (identity `server-ns/server`).
async fn world(pod: SocketAddr) -> World {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "server");
    let callee = node("127.0.0.2", TestMeshTls::new(&ca, &[&server])).await;
    World { ca, server, callee, pod, pools: Default::default() }
}

impl World {
    fn publish(&self, authz: Option<Arc<ambit_proxy_core::authz::Authorization>>) {
        let mut config = with_pod(ProxyConfig { version: 1, ..ProxyConfig::default() }, self.pod, &self.server, self.callee.hbone, true);
        if let Some(authz) = authz {
            config.authorization = authz;
        }
        self.callee.config.store(config);
    }

    /// Opens a tunnel to the pod as `namespace/account`.
    async fn open(&self, namespace: &str, account: &str) -> Result<TunnelStream, TunnelError> {
        self.open_to(namespace, account, self.pod).await
    }

    /// Opens a tunnel to `target` (the pod's address, any port) as `namespace/account`.
    async fn open_to(&self, namespace: &str, account: &str, target: SocketAddr) -> Result<TunnelStream, TunnelError> {
        let caller = self.ca.id(namespace, account);
        let tls = TestMeshTls::new(&self.ca, &[&caller]);
        let pool = HbonePool::new(tls, Arc::new(NodeSockets), PoolOptions::default(), Arc::new(HboneMetrics::default()));
        self.pools.lock().unwrap().push(pool.clone());
        let key = TunnelKey { source: Source::Node, identity: caller, node: self.callee.hbone, expected: self.server.clone() };
        tokio::time::timeout(WAIT, pool.open(&key, target, &CallContext::default())).await.expect("tunnel timed out")
    }

    fn authz_metrics(&self) -> &ambit_proxy_core::metrics::AuthzMetrics {
        self.callee.metrics.authz()
    }
}

fn assert_forbidden(opened: Result<TunnelStream, TunnelError>) {
    match opened {
        Err(TunnelError::Status(_, status)) => assert_eq!(status, StatusCode::FORBIDDEN),
        Err(other) => panic!("refused with {other}, not 403"),
        Ok(_) => panic!("the tunnel was admitted"),
    }
}

async fn round_trip(stream: &mut TunnelStream, payload: &[u8]) {
    stream.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back)).await.expect("echo timed out").unwrap();
    assert_eq!(back, payload);
}

#[tokio::test]
async fn l4_rules_admit_the_named_service_account_and_refuse_another() {
    let w = world(echo_pod("127.0.0.3").await).await;
    let allow = policy("allow-frontend", Action::Allow, vec![from(vec![service_account("web", "frontend")])]);
    w.publish(Some(authorization(w.pod, vec![allow])));
    let mut stream = w.open("web", "frontend").await.expect("the allowed caller was refused");
    round_trip(&mut stream, b"hello").await;
    assert_forbidden(w.open("web", "other").await);
    assert_forbidden(w.open("shop", "frontend").await);
    let m = w.authz_metrics();
    assert_eq!(m.decisions(&decision("allow-frontend", "0", "allow", "allowed_by_rule", "connection")), 1);
    assert_eq!(m.decisions(&decision("", "", "deny", "not_allowed", "connection")), 2);
}

#[tokio::test]
async fn a_pod_no_policy_selects_is_open_and_uncounted() {
    let w = world(echo_pod("127.0.0.3").await).await;
    w.publish(None);
    let mut stream = w.open("anyone", "at-all").await.expect("an open pod refused a mesh caller");
    round_trip(&mut stream, b"open").await;
    assert_eq!(w.authz_metrics().decisions(&decision("", "", "allow", "open", "connection")), 0);
}

#[tokio::test]
async fn ports_in_rules_are_the_destination_pod_port() {
    let w = world(echo_pod("127.0.0.3").await).await;
    let other_port = w.pod.port().wrapping_add(1);
    let rule = |port| ambit_proxy_core::authz::Rule { sources: None, ports: vec![port], http: None };
    w.publish(Some(authorization(w.pod, vec![policy("pod-port", Action::Allow, vec![rule(w.pod.port())])])));
    let mut stream = w.open("web", "frontend").await.expect("the pod port was refused");
    round_trip(&mut stream, b"port").await;
    w.publish(Some(authorization(w.pod, vec![policy("other-port", Action::Allow, vec![rule(other_port)])])));
    assert_forbidden(w.open("web", "frontend").await);
}

#[tokio::test]
async fn a_namespace_wide_source_admits_every_account_of_that_namespace() {
    let w = world(echo_pod("127.0.0.3").await).await;
    let allow = policy("allow-web", Action::Allow, vec![from(vec![namespace("web")])]);
    w.publish(Some(authorization(w.pod, vec![allow])));
    for account in ["frontend", "batch", "default"] {
        let mut stream = w.open("web", account).await.unwrap_or_else(|e| panic!("web/{account} refused: {e}"));
        round_trip(&mut stream, account.as_bytes()).await;
    }
    assert_forbidden(w.open("ops", "frontend").await);
}

#[tokio::test]
async fn a_deny_rule_beats_an_allow_rule() {
    let w = world(echo_pod("127.0.0.3").await).await;
    let allow = policy("allow-web", Action::Allow, vec![from(vec![namespace("web")])]);
    let deny = policy("deny-batch", Action::Deny, vec![from(vec![service_account("web", "batch")])]);
    w.publish(Some(authorization(w.pod, vec![allow, deny])));
    let mut stream = w.open("web", "frontend").await.expect("web/frontend refused");
    round_trip(&mut stream, b"ok").await;
    assert_forbidden(w.open("web", "batch").await);
    assert_eq!(w.authz_metrics().decisions(&decision("deny-batch", "0", "deny", "denied_by_rule", "connection")), 1);
}

/// Sends one HTTP/1.1 request on `stream` and reads the response head and body.
async fn http_request(stream: &mut TunnelStream, method: &str, path: &str) -> (u16, String) {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: server\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((status, body)) = complete_response(&data) {
            return (status, body);
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await.expect("response timed out").unwrap();
        assert!(n > 0, "stream closed before a full response: {}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
    }
}

/// The status and body of a complete response with a Content-Length.
fn complete_response(data: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))?;
    (body.len() >= length).then(|| (status, body[..length].to_owned()))
}

#[tokio::test]
async fn http_rules_decide_each_request_by_method_and_normalised_path() {
    let w = world(http_backend("pod").await).await;
    let allow = policy("allow-api", Action::Allow, vec![get_api(service_account("web", "frontend"))]);
    w.publish(Some(authorization(w.pod, vec![allow])));
    // Another service account: no rule could allow it, the stream itself is refused.
    assert_forbidden(w.open("web", "other").await);
    let mut stream = w.open("web", "frontend").await.expect("the allowed caller was refused");
    let (status, body) = http_request(&mut stream, "GET", "/api/items?x=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(field(&body, "path"), Some("/api/items?x=1"));
    let (status, body) = http_request(&mut stream, "POST", "/api/items").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("denied"), "{body}");
    assert_eq!(http_request(&mut stream, "GET", "/admin").await.0, 403);
    // Normalised before matching, and forwarded normalised.
    assert_eq!(http_request(&mut stream, "GET", "/api/../admin").await.0, 403);
    assert_eq!(http_request(&mut stream, "GET", "/api/%2e%2e/admin").await.0, 403);
    let (status, body) = http_request(&mut stream, "GET", "//api//items").await;
    assert_eq!((status, field(&body, "path")), (200, Some("/api/items")), "{body}");
    let (status, body) = http_request(&mut stream, "GET", "/%61pi/./x").await;
    assert_eq!((status, field(&body, "path")), (200, Some("/api/x")), "{body}");
    assert_eq!(http_request(&mut stream, "GET", "/api%2Fadmin").await.0, 400);
    assert_eq!(http_request(&mut stream, "GET", "/api/../../etc").await.0, 400);
    assert_eq!(http_request(&mut stream, "GET", "/api").await.0, 200, "the stream broke after refusals");
    let m = w.authz_metrics();
    assert_eq!(m.decisions(&decision("allow-api", "0", "allow", "allowed_by_rule", "request")), 4);
    assert_eq!(m.decisions(&decision("", "", "deny", "not_allowed", "request")), 4);
}

#[tokio::test]
async fn malformed_http_on_a_filtered_stream_gets_400_and_upgrades_501() {
    let w = world(http_backend("pod").await).await;
    let allow = policy("allow-api", Action::Allow, vec![get_api(service_account("web", "frontend"))]);
    w.publish(Some(authorization(w.pod, vec![allow])));
    let mut stream = w.open("web", "frontend").await.unwrap();
    let upgrade = "GET /api/ws HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n";
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    while complete_response(&data).is_none() {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("no answer").unwrap();
        assert!(n > 0);
        data.extend_from_slice(&buf[..n]);
    }
    assert_eq!(complete_response(&data).unwrap().0, 501);
    let mut garbage = w.open("web", "frontend").await.unwrap();
    garbage.write_all(b"GET /api HTTP/1.1\r\nA header without a colon\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, garbage.read_to_end(&mut answer)).await.expect("not closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn http2_callers_are_decided_per_request_too() {
    let w = world(http_backend("pod").await).await;
    let allow = policy("allow-api", Action::Allow, vec![get_api(service_account("web", "frontend"))]);
    w.publish(Some(authorization(w.pod, vec![allow])));
    let stream = w.open("web", "frontend").await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    for (method, path, expected) in [("GET", "/api/a", 200), ("DELETE", "/api/a", 403), ("GET", "/api/../x", 403), ("GET", "/api/b", 200)] {
        let request = http::Request::builder().method(method).uri(format!("http://server{path}")).body(Default::default()).unwrap();
        let response = tokio::time::timeout(WAIT, sender.send_request(request)).await.unwrap().unwrap();
        assert_eq!(response.status().as_u16(), expected, "{method} {path}");
    }
}

/// Waits until `stream` is closed by the other side (EOF or an error).
async fn closed_within(stream: &mut TunnelStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(wait, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn a_new_policy_closes_the_open_streams_it_refuses_and_keeps_the_others() {
    let w = world(echo_pod("127.0.0.3").await).await;
    w.publish(None);
    let mut frontend = w.open("web", "frontend").await.unwrap();
    let mut other = w.open("web", "other").await.unwrap();
    round_trip(&mut frontend, b"before").await;
    round_trip(&mut other, b"before").await;
    let allow = policy("allow-frontend", Action::Allow, vec![from(vec![service_account("web", "frontend")])]);
    w.publish(Some(authorization(w.pod, vec![allow])));
    assert!(closed_within(&mut other, Duration::from_secs(5)).await, "the refused stream stayed open");
    round_trip(&mut frontend, b"after").await;
    assert_eq!(w.authz_metrics().revoked(), 1);
    assert_eq!(w.callee.proxy_open_streams(), 1);
}

#[tokio::test]
async fn a_filtered_stream_is_closed_when_every_request_on_it_would_be_refused() {
    let w = world(http_backend("pod").await).await;
    let allow = policy("allow-api", Action::Allow, vec![get_api(service_account("web", "frontend"))]);
    w.publish(Some(authorization(w.pod, vec![allow])));
    let mut stream = w.open("web", "frontend").await.unwrap();
    assert_eq!(http_request(&mut stream, "GET", "/api").await.0, 200);
    // Still allowed by some rule: the stream stays, requests are decided one by one.
    let narrower = policy("allow-api", Action::Allow, vec![get_api(service_account("web", "frontend")), from(vec![namespace("ops")])]);
    w.publish(Some(authorization(w.pod, vec![narrower])));
    assert_eq!(http_request(&mut stream, "GET", "/api").await.0, 200);
    let elsewhere = policy("allow-ops", Action::Allow, vec![from(vec![namespace("ops")])]);
    w.publish(Some(authorization(w.pod, vec![elsewhere])));
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await, "the refused stream stayed open");
}

#[tokio::test]
async fn an_unparsed_stream_is_closed_when_the_pod_gets_http_rules() {
    let w = world(http_backend("pod").await).await;
    w.publish(None);
    let mut stream = w.open("web", "frontend").await.unwrap();
    assert_eq!(http_request(&mut stream, "POST", "/admin").await.0, 200);
    let allow = policy("allow-api", Action::Allow, vec![get_api(service_account("web", "frontend"))]);
    w.publish(Some(authorization(w.pod, vec![allow])));
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await, "a byte-copied stream outlived the new HTTP rules");
    let mut again = w.open("web", "frontend").await.unwrap();
    assert_eq!(http_request(&mut again, "POST", "/admin").await.0, 403);
}

#[tokio::test]
async fn raw_tcp_to_a_port_with_only_l4_rules_is_copied_while_another_port_has_http_rules() {
    // One pod (127.0.0.1) with an HTTP server on one port and a raw echo on another.
    let w = world(http_backend("pod").await).await;
    let raw = echo_pod("127.0.0.1").await;
    let http_rule = Rule { ports: vec![w.pod.port()], ..get_api(service_account("web", "frontend")) };
    let l4_rule = Rule { ports: vec![raw.port()], ..from(vec![service_account("web", "frontend")]) };
    w.publish(Some(authorization(w.pod, vec![policy("mixed", Action::Allow, vec![http_rule, l4_rule])])));
    // Not HTTP at all: it would get a 400 if the stream were parsed.
    let mut stream = w.open_to("web", "frontend", raw).await.expect("the L4 rule's port was refused");
    round_trip(&mut stream, b"\x00\x01 not http \r\n\r\n").await;
    assert_forbidden(w.open_to("web", "other", raw).await);
    // The HTTP port still decides per request.
    let mut http = w.open("web", "frontend").await.expect("the HTTP rule's port was refused");
    assert_eq!(http_request(&mut http, "GET", "/api/x").await.0, 200);
    assert_eq!(http_request(&mut http, "POST", "/api/x").await.0, 403);
    let m = w.authz_metrics();
    assert_eq!(m.decisions(&decision("mixed", "1", "allow", "allowed_by_rule", "connection")), 1);
    assert_eq!(m.decisions(&decision("mixed", "0", "allow", "allowed_by_rule", "request")), 1);
}
