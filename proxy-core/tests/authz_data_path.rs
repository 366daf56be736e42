//! AuthorizationPolicy enforcement seen by callers of the data path: same-node calls
//! handed over in-process (403 for HTTP callers, a reset for TCP ones, HTTP rules per
//! request), calls through two node proxies, and a live policy change closing an open
//! same-node TCP connection.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::authz::{Action, Policy};
use ambit_proxy_core::config::{AppProtocol, RouteSet};
use ambit_proxy_core::identity::SpiffeId;
use support::authz_fixtures::*;
use support::mesh_pki::{TestCa, TestMeshTls};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// The fixtures' caller (namespace `client-ns`, service account `default`).
fn caller_id(ca: &TestCa) -> SpiffeId {
    ca.id(CALLER_NAMESPACE, "default")
}

fn request(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

async fn status_of(proxy: SocketAddr, method: &str, path: &str) -> String {
    let answer = raw_exchange(proxy, &request(method, path), WAIT).await;
    answer.lines().next().unwrap_or("").to_owned()
}

/// Publishes on `node` the Service [`VIP`] with the mesh pod `pod` (hosted by the node
/// at `hbone`), and `policies` for it on the callee's side when `on_this_node`.
fn publish(
    node: &Node,
    protocol: AppProtocol,
    pod: SocketAddr,
    identity: &SpiffeId,
    hbone: SocketAddr,
    on_this_node: bool,
    policies: Option<Vec<Arc<Policy>>>,
) {
    let config = config_with(service_port(protocol, vec![pod], RouteSet::default()));
    let mut config = with_pod(config, pod, identity, hbone, on_this_node);
    if let Some(policies) = policies {
        config.authorization = authorization(pod, policies);
    }
    node.config.store(config);
}

#[tokio::test]
async fn same_node_l4_refusals_are_403_for_http_callers_and_a_reset_for_tcp_callers() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let backend = http_backend("local").await;
    let only = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca), &server])).await;
    let others = || Some(vec![policy("allow-web", Action::Allow, vec![from(vec![namespace("web")])])]);
    publish(&only, AppProtocol::Http, backend, &server, only.hbone, true, others());
    assert_eq!(status_of(only.addr, "GET", "/").await, "HTTP/1.1 403 Forbidden");
    publish(&only, AppProtocol::Tcp, backend, &server, only.hbone, true, others());
    let mut client = TcpStream::connect(only.addr).await.unwrap();
    client.write_all(&request("GET", "/")).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, client.read_to_end(&mut rest)).await.expect("not closed");
    assert!(read.is_err() || rest.is_empty(), "a refused TCP caller got {:?}", String::from_utf8_lossy(&rest));
    let mine = Some(vec![policy("allow-client", Action::Allow, vec![from(vec![service_account(CALLER_NAMESPACE, "default")])])]);
    publish(&only, AppProtocol::Http, backend, &server, only.hbone, true, mine);
    assert_eq!(status_of(only.addr, "GET", "/").await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn same_node_http_rules_decide_each_request() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let backend = http_backend("local").await;
    let only = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca), &server])).await;
    let rules = Some(vec![policy("allow-api", Action::Allow, vec![get_api(service_account(CALLER_NAMESPACE, "default"))])]);
    publish(&only, AppProtocol::Http, backend, &server, only.hbone, true, rules);
    let answer = raw_exchange(only.addr, &request("GET", "/api/items"), WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("backend=local"), "{answer}");
    assert_eq!(status_of(only.addr, "POST", "/api/items").await, "HTTP/1.1 403 Forbidden");
    assert_eq!(status_of(only.addr, "GET", "/admin").await, "HTTP/1.1 403 Forbidden");
    let labels = decision("allow-api", "0", "allow", "allowed_by_rule", "request");
    assert_eq!(only.metrics.authz().decisions(&labels), 1);
}

#[tokio::test]
async fn through_two_node_proxies_l4_and_http_refusals_reach_the_caller_as_403() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let backend = http_backend("remote").await;
    let callee = node("127.0.0.2", TestMeshTls::new(&ca, &[&server])).await;
    let caller = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca)])).await;
    publish(&caller, AppProtocol::Http, backend, &server, callee.hbone, false, None);
    let others = Some(vec![policy("allow-web", Action::Allow, vec![from(vec![namespace("web")])])]);
    publish(&callee, AppProtocol::Http, backend, &server, callee.hbone, true, others);
    assert_eq!(status_of(caller.addr, "GET", "/api").await, "HTTP/1.1 403 Forbidden");
    let rules = Some(vec![policy("allow-api", Action::Allow, vec![get_api(namespace(CALLER_NAMESPACE))])]);
    publish(&callee, AppProtocol::Http, backend, &server, callee.hbone, true, rules);
    let answer = raw_exchange(caller.addr, &request("GET", "/api/x"), WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("backend=remote"), "{answer}");
    assert_eq!(status_of(caller.addr, "PUT", "/api/x").await, "HTTP/1.1 403 Forbidden");
}

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

async fn echoes(client: &mut TcpStream, payload: &[u8]) {
    client.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(WAIT, client.read_exact(&mut back)).await.expect("echo timed out").unwrap();
    assert_eq!(back, payload);
}

#[tokio::test]
async fn a_new_policy_closes_an_open_same_node_tcp_connection_it_refuses() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let pod = echo_pod("127.0.0.3").await;
    let only = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca), &server])).await;
    publish(&only, AppProtocol::Tcp, pod, &server, only.hbone, true, None);
    let mut client = TcpStream::connect(only.addr).await.unwrap();
    echoes(&mut client, b"before").await;
    let others = Some(vec![policy("allow-web", Action::Allow, vec![from(vec![namespace("web")])])]);
    publish(&only, AppProtocol::Tcp, pod, &server, only.hbone, true, others);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await.expect("the refused connection stayed open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(only.metrics.authz().revoked(), 1);
}

#[tokio::test]
async fn same_node_http_requests_are_decided_by_the_callers_proxy_on_normalised_paths() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let backend = http_backend("local").await;
    let only = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca), &server])).await;
    let rules = || Some(vec![policy("allow-api", Action::Allow, vec![get_api(service_account(CALLER_NAMESPACE, "default"))])]);
    publish(&only, AppProtocol::Http, backend, &server, only.hbone, true, rules());
    // Normalised before matching, and forwarded normalised (the query kept).
    let answer = raw_exchange(only.addr, &request("GET", "/x/../api//items?q=1"), WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\npath=/api/items?q=1\n"), "{answer}");
    assert_eq!(status_of(only.addr, "GET", "/api/%2e%2e/admin").await, "HTTP/1.1 403 Forbidden");
    assert_eq!(status_of(only.addr, "GET", "/api%2Fadmin").await, "HTTP/1.1 400 Bad Request");
    let labels = decision("allow-api", "0", "allow", "allowed_by_rule", "request");
    assert_eq!(only.metrics.authz().decisions(&labels), 1);
    // The same pod behind an opaque TCP Service: its stream is served as HTTP by the gate.
    publish(&only, AppProtocol::Tcp, backend, &server, only.hbone, true, rules());
    assert_eq!(status_of(only.addr, "POST", "/api/items").await, "HTTP/1.1 403 Forbidden");
    assert_eq!(status_of(only.addr, "GET", "/api/items").await, "HTTP/1.1 200 OK");
    assert_eq!(only.metrics.authz().decisions(&labels), 2);
}
