//! HBONE between two node proxies on loopback, with real mutual TLS 1.3: the outbound
//! pool on one side, the inbound server on another address, test certificates from
//! one CA (tests/support/mesh_pki.rs).

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_proxy_core::config::{ConfigHandle, MeshDestination, ProxyConfig};
use ambit_proxy_core::hbone::{
    CallContext, HboneMetrics, HbonePool, Inbound, InboundGate, InboundOptions, InboundPolicy, InboundRequest, PoolOptions,
    TunnelError, TunnelKey,
};
use ambit_proxy_core::identity::SpiffeId;
use ambit_proxy_core::proxy::{bind, NodeSockets, Source};
use ambit_proxy_core::tls::Refusal;
use support::mesh_pki::{TestCa, TestMeshTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// Records every admitted inbound stream.
#[derive(Default)]
struct Recorder(Mutex<Vec<InboundRequest>>);

impl InboundPolicy for Recorder {
    fn admit(&self, request: &InboundRequest) -> Result<(), String> {
        self.0.lock().unwrap().push(request.clone());
        Ok(())
    }
}

impl Recorder {
    fn seen(&self) -> Vec<InboundRequest> {
        self.0.lock().unwrap().clone()
    }
}

/// A "pod": echoes each connection's bytes back, then closes its side after the
/// client's half-close. Counts connections.
async fn echo_pod(ip: &str) -> (SocketAddr, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

/// The callee node: an inbound server for pods in `pods` (all on this node).
struct CalleeNode {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    metrics: Arc<HboneMetrics>,
    shutdown: CancellationToken,
}

fn mesh_config(pods: &[(IpAddr, SpiffeId)], node: SocketAddr, on_this_node: bool) -> ProxyConfig {
    let mesh: HashMap<IpAddr, MeshDestination> = pods
        .iter()
        .map(|(ip, id)| (*ip, MeshDestination { node, identity: id.clone(), on_this_node, guarded: false }))
        .collect();
    ProxyConfig { mesh, version: 1, ..ProxyConfig::default() }
}

async fn callee(tls: Arc<TestMeshTls>, pods: &[(IpAddr, SpiffeId)], at: Option<SocketAddr>, options: InboundOptions) -> CalleeNode {
    let listener = bind(at.unwrap_or_else(|| "127.0.0.2:0".parse().unwrap())).unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Arc::new(Recorder::default());
    let metrics = Arc::new(HboneMetrics::default());
    let config = ConfigHandle::new(mesh_config(pods, addr, true));
    let gate = InboundGate::new(config, recorder.clone(), metrics.clone());
    let shutdown = CancellationToken::new();
    tokio::spawn(Inbound::new(tls, gate, options).serve(listener, shutdown.clone()));
    CalleeNode { addr, recorder, metrics, shutdown }
}

struct World {
    ca: TestCa,
    caller: SpiffeId,
    server: SpiffeId,
}

fn world() -> World {
    let ca = TestCa::new("cluster.local");
    let caller = ca.id("shop", "web");
    let server = ca.id("shop", "catalog");
    World { ca, caller, server }
}

fn pool(tls: Arc<TestMeshTls>, options: PoolOptions) -> Arc<HbonePool> {
    HbonePool::new(tls, Arc::new(NodeSockets), options, Arc::new(HboneMetrics::default()))
}

fn key(w: &World, node: SocketAddr) -> TunnelKey {
    TunnelKey { source: Source::Node, identity: w.caller.clone(), node, expected: w.server.clone() }
}

async fn round_trip(stream: &mut ambit_proxy_core::hbone::TunnelStream, payload: &[u8]) {
    stream.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back)).await.expect("echo timed out").unwrap();
    assert_eq!(back, payload);
}

#[tokio::test]
async fn a_tunnel_reaches_the_pod_and_the_inbound_side_sees_the_callers_identity() {
    let w = world();
    let (pod, _) = echo_pod("127.0.0.3").await;
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await;
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), PoolOptions::default());
    let call = CallContext { service: Some("shop/catalog:80".into()), ..CallContext::default() };
    let mut stream = pool.open(&key(&w, node.addr), pod, &call).await.unwrap();
    round_trip(&mut stream, b"hello through the mesh").await;
    let seen = node.recorder.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].peer, w.caller);
    assert_eq!(seen[0].destination, pod);
    assert_eq!(seen[0].destination_identity, w.server);
    assert_eq!(seen[0].service.as_deref(), Some("shop/catalog:80"));
}

#[tokio::test]
async fn many_streams_share_one_tls_connection_until_the_servers_stream_limit() {
    let w = world();
    let (pod, accepted) = echo_pod("127.0.0.3").await;
    let options = InboundOptions { max_streams_per_connection: 8, ..InboundOptions::default() };
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, options).await;
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), PoolOptions::default());
    let key = key(&w, node.addr);
    // Sequential and concurrent streams, never more than 8 at once: one handshake.
    for _ in 0..20 {
        let mut stream = pool.open(&key, pod, &CallContext::default()).await.unwrap();
        round_trip(&mut stream, b"ping").await;
    }
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(pool.open(&key, pod, &CallContext::default()).await.unwrap());
    }
    for stream in &mut open {
        round_trip(stream, b"pong").await;
    }
    assert_eq!(pool.handshakes(), 1, "streams did not share the connection");
    // A ninth concurrent stream needs a second connection (the server allows 8).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut ninth = loop {
        // The server's SETTINGS may arrive after the first streams were opened.
        let stream = pool.open(&key, pod, &CallContext::default()).await.unwrap();
        if pool.handshakes() == 2 {
            break stream;
        }
        assert!(tokio::time::Instant::now() < deadline, "no second connection when the first was full");
    };
    round_trip(&mut ninth, b"ninth").await;
    assert_eq!(*accepted.lock().unwrap(), 29);
}

/// Two data-path workers (current-thread runtimes on their own threads) share one pool
/// and take turns: each dials one connection and reuses it, never the other's (whose
/// task runs on the other thread).
#[test]
fn each_worker_thread_dials_and_reuses_its_own_connection() {
    let background = tokio::runtime::Runtime::new().unwrap();
    let w = world();
    let (pod, node) = background.block_on(async {
        let (pod, _) = echo_pod("127.0.0.3").await;
        (pod, callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await)
    });
    let pool = background.block_on(async { pool(TestMeshTls::new(&w.ca, &[&w.caller]), PoolOptions::default()) });
    let key = key(&w, node.addr);
    let worker = || {
        let (turn, mut turns) = tokio::sync::mpsc::unbounded_channel::<std::sync::mpsc::Sender<()>>();
        let (pool, key) = (pool.clone(), key.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                while let Some(done) = turns.recv().await {
                    let mut stream = pool.open(&key, pod, &CallContext::default()).await.unwrap();
                    round_trip(&mut stream, b"ping").await;
                    done.send(()).unwrap();
                }
            });
        });
        turn
    };
    let workers = [worker(), worker()];
    for _round in 0..3 {
        for worker in &workers {
            let (done, finished) = std::sync::mpsc::channel();
            worker.send(done).unwrap();
            finished.recv_timeout(WAIT).expect("a worker's stream did not finish");
        }
    }
    assert_eq!(pool.handshakes(), 2, "one connection per worker");
}

#[tokio::test]
async fn a_server_presenting_another_identity_is_refused_before_anything_is_sent() {
    let w = world();
    let (pod, accepted) = echo_pod("127.0.0.3").await;
    let other = w.ca.id("shop", "payments");
    let impostor = TestMeshTls::impostor(&w.ca, &[&w.server], &other);
    let node = callee(impostor, &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await;
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), PoolOptions::default());
    let result = pool.open(&key(&w, node.addr), pod, &CallContext::default()).await;
    assert!(
        matches!(result, Err(TunnelError::Refused { reason: Refusal::WrongIdentity, .. })),
        "{result:?}"
    );
    assert!(node.recorder.seen().is_empty(), "a stream reached the inbound side");
    assert_eq!(*accepted.lock().unwrap(), 0);
}

#[tokio::test]
async fn plaintext_on_the_hbone_port_is_closed_and_counted() {
    let w = world();
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[], None, InboundOptions::default()).await;
    let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await.expect("plaintext connection left open");
    assert!(read.is_err() || rest.is_empty(), "answered plaintext: {rest:?}");
    assert_eq!(node.metrics.refusals(Refusal::Plaintext), 1);
}

#[tokio::test]
async fn a_client_of_a_foreign_ca_is_refused_and_counted() {
    let w = world();
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[], None, InboundOptions::default()).await;
    // The client trusts the server's CA but its own certificate is from another CA.
    let foreign = TestCa::new("cluster.local");
    let pool = pool(TestMeshTls::issued_by(&foreign, &w.ca, &[&w.caller]), PoolOptions::default());
    let result = pool.open(&key(&w, node.addr), "127.0.0.3:1".parse().unwrap(), &CallContext::default()).await;
    assert!(result.is_err(), "a tunnel opened with a foreign client certificate");
    assert!(node.recorder.seen().is_empty());
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.metrics.refusals(Refusal::UnknownCa) != 1 {
        assert!(tokio::time::Instant::now() < deadline, "server did not count the foreign client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pods_not_on_the_callee_node_are_not_found_and_nothing_is_dialled() {
    let w = world();
    let (pod, accepted) = echo_pod("127.0.0.3").await;
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await;
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), PoolOptions::default());
    let elsewhere: SocketAddr = "127.0.0.4:8080".parse().unwrap();
    let result = pool.open(&key(&w, node.addr), elsewhere, &CallContext::default()).await;
    assert!(matches!(result, Err(TunnelError::Status(_, status)) if status == 404), "{result:?}");
    assert_eq!(*accepted.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_caller_without_a_certificate_fails_closed() {
    let w = world();
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[], None, InboundOptions::default()).await;
    let pool = pool(TestMeshTls::new(&w.ca, &[]), PoolOptions::default());
    let result = pool.open(&key(&w, node.addr), "127.0.0.3:1".parse().unwrap(), &CallContext::default()).await;
    assert!(matches!(result, Err(TunnelError::NoCertificate(_))), "{result:?}");
    assert_eq!(pool.handshakes(), 0);
}

#[tokio::test]
async fn after_the_inbound_side_restarts_pooled_connections_are_replaced_without_hanging() {
    let w = world();
    let (pod, _) = echo_pod("127.0.0.3").await;
    let pods = [(pod.ip(), w.server.clone())];
    let server_tls = TestMeshTls::new(&w.ca, &[&w.server]);
    let first = callee(server_tls.clone(), &pods, None, InboundOptions::default()).await;
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), PoolOptions::default());
    let key = key(&w, first.addr);
    let mut stream = pool.open(&key, pod, &CallContext::default()).await.unwrap();
    round_trip(&mut stream, b"before").await;
    drop(stream);
    first.shutdown.cancel();
    let second = callee(server_tls, &pods, Some(first.addr), InboundOptions::default()).await;
    let started = std::time::Instant::now();
    let mut stream = tokio::time::timeout(Duration::from_secs(5), pool.open(&key, pod, &CallContext::default()))
        .await
        .expect("opening a tunnel after the restart hung")
        .unwrap();
    round_trip(&mut stream, b"after").await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(pool.handshakes(), 2);
    assert_eq!(second.recorder.seen().len(), 1);
}

#[tokio::test]
async fn bulk_bytes_flow_both_ways_and_half_close_is_carried() {
    let w = world();
    // A pod that reads everything until the client's half-close, then answers with
    // as many bytes as it got, and closes.
    let listener = TcpListener::bind("127.0.0.3:0").await.unwrap();
    let pod = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        let answer: Vec<u8> = got.iter().rev().copied().collect();
        stream.write_all(&answer).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await;
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), PoolOptions::default());
    let mut stream = pool.open(&key(&w, node.addr), pod, &CallContext::default()).await.unwrap();
    let payload: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let exchange = async {
        stream.write_all(&payload).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        back
    };
    let back = tokio::time::timeout(Duration::from_secs(60), exchange).await.expect("bulk exchange hung");
    assert_eq!(back.len(), payload.len());
    assert!(back.iter().eq(payload.iter().rev()), "bytes changed in transit");
}

/// Copies `from` to `to` until either ends; once `frozen`, swallows everything and
/// keeps both open.
async fn pump<R, W>(mut from: R, mut to: W, frozen: Arc<std::sync::atomic::AtomicBool>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(std::sync::atomic::Ordering::Relaxed) {
            let _keep_open = (from, to);
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP relay to `target` that can be frozen: it then stops moving bytes without
/// closing anything (a peer node gone silent).
async fn freezable_relay(target: SocketAddr) -> (SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.5:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = frozen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else { continue };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pump(client_read, server_write, flag.clone()));
            tokio::spawn(pump(server_read, client_write, flag.clone()));
        }
    });
    (addr, frozen)
}

#[tokio::test]
async fn a_silent_peer_is_found_by_pings_and_its_connection_replaced() {
    let w = world();
    let (pod, _) = echo_pod("127.0.0.3").await;
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await;
    let (relay, frozen) = freezable_relay(node.addr).await;
    let options = PoolOptions {
        keepalive_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_millis(500),
        ..PoolOptions::default()
    };
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), options);
    let key = key(&w, relay);
    let mut stream = pool.open(&key, pod, &CallContext::default()).await.unwrap();
    round_trip(&mut stream, b"before").await;
    frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    // The frozen connection's stream fails once PINGs go unanswered.
    stream.write_all(b"lost").await.unwrap();
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("a stream on a dead connection hung");
    assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
    assert_eq!(pool.open_connections(), 0, "the dead connection is still pooled");
    frozen.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut stream = tokio::time::timeout(WAIT, pool.open(&key, pod, &CallContext::default())).await.expect("hung").unwrap();
    round_trip(&mut stream, b"after").await;
    assert_eq!(pool.handshakes(), 2);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let w = world();
    let (pod, _) = echo_pod("127.0.0.3").await;
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await;
    let options = PoolOptions { idle_timeout: Duration::from_millis(300), ..PoolOptions::default() };
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), options);
    let mut stream = pool.open(&key(&w, node.addr), pod, &CallContext::default()).await.unwrap();
    round_trip(&mut stream, b"x").await;
    // A connection with an open stream is never idle.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(pool.open_connections(), 1);
    drop(stream);
    let deadline = tokio::time::Instant::now() + WAIT;
    while pool.open_connections() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "idle connection never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_cut_and_counted() {
    let w = world();
    let options = InboundOptions { handshake_timeout: Duration::from_millis(500), ..InboundOptions::default() };
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[], None, options).await;
    let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await.expect("slow handshake left open");
    assert!(read.is_err() || rest.is_empty());
    assert_eq!(node.metrics.refusals(Refusal::Handshake), 1);
}

/// Sends one raw HTTP/2 request on a mutual TLS connection to `node` and returns the
/// answer's status.
async fn raw_h2_status(w: &World, node: SocketAddr, request: http::Request<()>) -> http::StatusCode {
    use ambit_proxy_core::tls::MeshTls;
    let tls = TestMeshTls::new(&w.ca, &[&w.caller]);
    let config = tls.client_config(&w.caller).unwrap();
    let tcp = tokio::net::TcpStream::connect(node).await.unwrap();
    let name = ambit_proxy_core::tls::server_name(&w.server).unwrap();
    let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let (sender, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut sender = sender.ready().await.unwrap();
    let (response, _send) = sender.send_request(request, false).unwrap();
    tokio::time::timeout(WAIT, response).await.expect("no answer").unwrap().status()
}

#[tokio::test]
async fn other_methods_and_bad_authorities_are_answered_with_clear_statuses() {
    let w = world();
    let (pod, accepted) = echo_pod("127.0.0.3").await;
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await;
    let get = http::Request::get(format!("http://{pod}/")).body(()).unwrap();
    assert_eq!(raw_h2_status(&w, node.addr, get).await, 405);
    let by_name = http::Request::connect("catalog.shop:80").body(()).unwrap();
    assert_eq!(raw_h2_status(&w, node.addr, by_name).await, 400);
    let good = http::Request::connect(pod.to_string()).body(()).unwrap();
    assert_eq!(raw_h2_status(&w, node.addr, good).await, 200);
    assert_eq!(*accepted.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_caller_of_a_foreign_trust_domain_is_refused_even_with_a_valid_chain() {
    let w = world();
    let (pod, accepted) = echo_pod("127.0.0.3").await;
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, InboundOptions::default()).await;
    let foreign = SpiffeId::new(ambit_proxy_core::identity::TrustDomain::new("other.example").unwrap(), "shop", "web").unwrap();
    let pool = pool(TestMeshTls::new(&w.ca, &[&foreign]), PoolOptions::default());
    let key = TunnelKey { identity: foreign, ..key(&w, node.addr) };
    let result = pool.open(&key, pod, &CallContext::default()).await;
    assert!(matches!(result, Err(TunnelError::Status(_, status)) if status == 403), "{result:?}");
    assert_eq!(node.metrics.refusals(Refusal::ForeignTrustDomain), 1);
    assert_eq!(*accepted.lock().unwrap(), 0);
}

#[tokio::test]
async fn the_inbound_side_closes_streams_of_a_client_gone_silent() {
    let w = world();
    // A pod that reports when its connection ends.
    let listener = TcpListener::bind("127.0.0.3:0").await.unwrap();
    let pod = listener.local_addr().unwrap();
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let _ = stream.write_all(&buf[..n]).await;
        }
        let _ = ended_tx.send(());
    });
    let options = InboundOptions {
        keepalive_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_millis(500),
        ..InboundOptions::default()
    };
    let node = callee(TestMeshTls::new(&w.ca, &[&w.server]), &[(pod.ip(), w.server.clone())], None, options).await;
    let (relay, frozen) = freezable_relay(node.addr).await;
    let pool = pool(TestMeshTls::new(&w.ca, &[&w.caller]), PoolOptions::default());
    let mut stream = pool.open(&key(&w, relay), pod, &CallContext::default()).await.unwrap();
    round_trip(&mut stream, b"hi").await;
    frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::timeout(WAIT, ended).await.expect("the pod connection outlived a silent client").unwrap();
}
