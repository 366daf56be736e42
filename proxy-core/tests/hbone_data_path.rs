//! The data path with a mesh: a caller proxy tunnels to mesh pods on another "node"
//! (a second proxy's inbound HBONE server on another loopback address), hands calls to
//! mesh pods on its own node to its inbound gate without TLS, keeps endpoints outside
//! the mesh in plaintext, and fails closed without a caller certificate.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_proxy_core::config::{AppProtocol, ConfigHandle, MeshDestination, ProxyConfig, RouteSet};
use ambit_proxy_core::hbone::{stream_labels, HboneMetrics, InboundPolicy, InboundRequest, Tunnel};
use ambit_proxy_core::identity::SpiffeId;
use ambit_proxy_core::proxy::{bind, MeshSetup, NodeSockets, Proxy, ProxyOptions};
use support::mesh_pki::{TestCa, TestMeshTls};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Records every admitted inbound stream.
#[derive(Default)]
struct Recorder(Mutex<Vec<InboundRequest>>);

impl InboundPolicy for Recorder {
    fn admit(&self, request: &InboundRequest) -> Result<(), String> {
        self.0.lock().unwrap().push(request.clone());
        Ok(())
    }
}

struct Node {
    proxy: Arc<Proxy>,
    /// The data path listener (what a redirected caller connects to).
    addr: SocketAddr,
    /// The inbound HBONE server.
    hbone: SocketAddr,
    recorder: Arc<Recorder>,
    metrics: Arc<HboneMetrics>,
    config: ConfigHandle,
    shutdown: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A node proxy at `ip` with the certificates of `tls`.
async fn node(ip: &str, tls: Arc<TestMeshTls>) -> Node {
    node_at(ip, tls, None).await
}

/// A node proxy whose HBONE server listens on `hbone` (default: a free port on `ip`).
async fn node_at(ip: &str, tls: Arc<TestMeshTls>, hbone: Option<SocketAddr>) -> Node {
    let config = ConfigHandle::default();
    let recorder = Arc::new(Recorder::default());
    let metrics = Arc::new(HboneMetrics::default());
    let setup = MeshSetup { tls, policy: recorder.clone(), metrics: metrics.clone() };
    let options = ProxyOptions { detect_timeout: Duration::from_millis(100), ..ProxyOptions::default() };
    let proxy = Proxy::with_mesh(config.clone(), Arc::new(FixedOrigin), options, None, Arc::new(NodeSockets), setup);
    let shutdown = CancellationToken::new();
    let listener = bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy.clone().serve(listener, shutdown.clone(), Duration::from_secs(1)));
    let hbone_listener = bind(hbone.unwrap_or_else(|| format!("{ip}:0").parse().unwrap())).unwrap();
    let hbone = hbone_listener.local_addr().unwrap();
    tokio::spawn(proxy.hbone_inbound().unwrap().serve(hbone_listener, shutdown.clone()));
    Node { proxy, addr, hbone, recorder, metrics, config, shutdown }
}

/// The support fixtures' caller (namespace `client-ns`, service account `default`).
fn caller_id(ca: &TestCa) -> SpiffeId {
    ca.id(CALLER_NAMESPACE, "default")
}

/// Publishes the Service [`VIP`] with `endpoint`, a mesh pod of `identity` hosted by the
/// node at `hbone` (`on_this_node` from the publishing node's view).
fn publish(node: &Node, protocol: AppProtocol, endpoint: SocketAddr, identity: &SpiffeId, hbone: SocketAddr, on_this_node: bool) {
    let mut config = config_with(service_port(protocol, vec![endpoint], RouteSet::default()));
    config.mesh = HashMap::from([(endpoint.ip(), MeshDestination { node: hbone, identity: identity.clone(), on_this_node, guarded: false })]);
    node.config.store(config);
}

fn mesh_only(endpoint: SocketAddr, identity: &SpiffeId, hbone: SocketAddr) -> ProxyConfig {
    let mesh = HashMap::from([(endpoint.ip(), MeshDestination { node: hbone, identity: identity.clone(), on_this_node: true, guarded: false })]);
    ProxyConfig { mesh, version: 1, ..ProxyConfig::default() }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn http_calls_to_a_pod_on_another_node_are_tunnelled_with_the_callers_identity() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let backend = http_backend("remote").await;
    let callee = node("127.0.0.2", TestMeshTls::new(&ca, &[&server])).await;
    callee.config.store(mesh_only(backend, &server, callee.hbone));
    let caller = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca)])).await;
    publish(&caller, AppProtocol::Http, backend, &server, callee.hbone, false);
    for i in 0..10 {
        let answer = raw_exchange(caller.addr, &get(&format!("/call/{i}")), Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("backend=remote"), "{answer}");
    }
    let seen = callee.recorder.0.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r.peer == caller_id(&ca) && r.tunnel == Tunnel::Hbone && r.destination == backend));
    assert_eq!(seen[0].service.as_deref(), Some("server-ns/svc:80"));
    assert_eq!(caller.proxy.hbone_pool().unwrap().handshakes(), 1, "one TLS connection for every call");
}

#[tokio::test]
async fn tcp_passthrough_crosses_the_tunnel_with_bulk_bytes_and_half_close() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "sink");
    // Reads until the half-close, answers with the byte count, closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        let sum: u64 = got.iter().map(|b| u64::from(*b)).sum();
        stream.write_all(format!("{} {sum}", got.len()).as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    let callee = node("127.0.0.2", TestMeshTls::new(&ca, &[&server])).await;
    callee.config.store(mesh_only(pod, &server, callee.hbone));
    let caller = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca)])).await;
    publish(&caller, AppProtocol::Tcp, pod, &server, callee.hbone, false);
    let payload: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let expected = format!("{} {}", payload.len(), payload.iter().map(|b| u64::from(*b)).sum::<u64>());
    let mut client = TcpStream::connect(caller.addr).await.unwrap();
    let exchange = async {
        client.write_all(&payload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), exchange).await.expect("passthrough hung");
    assert_eq!(answer, expected);
    assert_eq!(callee.recorder.0.lock().unwrap()[0].peer, caller_id(&ca));
}

#[tokio::test]
async fn same_node_calls_carry_the_callers_identity_without_tls() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let backend = http_backend("local").await;
    let only = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca), &server])).await;
    publish(&only, AppProtocol::Http, backend, &server, only.hbone, true);
    let answer = raw_exchange(only.addr, &get("/"), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = only.recorder.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].peer.clone(), seen[0].tunnel, seen[0].destination_identity.clone()), (caller_id(&ca), Tunnel::Local, server));
    assert_eq!(only.proxy.hbone_pool().unwrap().handshakes(), 0, "a same-node call used TLS");
}

#[tokio::test]
async fn a_caller_without_a_certificate_fails_closed_and_endpoints_outside_the_mesh_stay_plaintext() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let backend = http_backend("remote").await;
    let callee = node("127.0.0.2", TestMeshTls::new(&ca, &[&server])).await;
    callee.config.store(mesh_only(backend, &server, callee.hbone));
    // The caller's node holds no certificate for it.
    let caller = node("127.0.0.1", TestMeshTls::new(&ca, &[])).await;
    publish(&caller, AppProtocol::Http, backend, &server, callee.hbone, false);
    let answer = raw_exchange(caller.addr, &get("/"), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(callee.recorder.0.lock().unwrap().is_empty(), "the call reached the callee");
    // TCP to the same mesh pod: reset, no plaintext fallback.
    publish(&caller, AppProtocol::Tcp, backend, &server, callee.hbone, false);
    let mut client = TcpStream::connect(caller.addr).await.unwrap();
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest)).await.expect("not closed");
    assert!(read.is_err() || rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // The same backend outside the mesh: plaintext, as before.
    caller.config.store(config_with(service_port(AppProtocol::Http, vec![backend], RouteSet::default())));
    let answer = raw_exchange(caller.addr, &get("/"), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(caller.proxy.hbone_pool().unwrap().handshakes(), 0);
    let refused = stream_labels("outbound", "hbone", &caller_id(&ca), Some(&server), "no_certificate");
    assert_eq!(caller.metrics.streams(&refused), 2, "fail-closed calls not counted");
}

#[tokio::test]
async fn calls_work_again_soon_after_the_callee_nodes_proxy_restarts() {
    let ca = TestCa::new("cluster.local");
    let server = ca.id("server-ns", "echo");
    let backend = http_backend("remote").await;
    let callee_tls = TestMeshTls::new(&ca, &[&server]);
    let callee = node("127.0.0.2", callee_tls.clone()).await;
    callee.config.store(mesh_only(backend, &server, callee.hbone));
    let caller = node("127.0.0.1", TestMeshTls::new(&ca, &[&caller_id(&ca)])).await;
    publish(&caller, AppProtocol::Http, backend, &server, callee.hbone, false);
    // Keep-alive HTTP/1.1 connections stay pooled on the tunnel between calls.
    let keep_alive = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: svc\r\n\r\n").into_bytes();
    let mut client = TcpStream::connect(caller.addr).await.unwrap();
    client.write_all(&keep_alive("/before")).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let hbone = callee.hbone;
    drop(callee);
    let restarted = node_at("127.0.0.2", callee_tls, Some(hbone)).await;
    restarted.config.store(mesh_only(backend, &server, hbone));
    let started = std::time::Instant::now();
    loop {
        let answer = raw_exchange(caller.addr, &get("/after"), Duration::from_secs(5)).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "calls still fail 2 s after the restart: {answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(restarted.recorder.0.lock().unwrap().iter().all(|r| r.peer == caller_id(&ca)));
    assert!(!restarted.recorder.0.lock().unwrap().is_empty());
}
