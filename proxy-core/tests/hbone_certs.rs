//! HBONE between two nodes whose certificates come from the agent's certificate store
//! (real rustls on loopback): the inbound side of a call to a pod whose certificate is
//! still being obtained waits for it instead of refusing the handshake.

mod cert_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::config::{ConfigHandle, MeshDestination, ProxyConfig};
use ambit_proxy_core::hbone::{
    AllowAll, CallContext, HboneMetrics, HbonePool, Inbound, InboundGate, InboundOptions, PoolOptions, TunnelError,
    TunnelKey,
};
use ambit_proxy_core::identity::{SpiffeId, TrustDomain};
use ambit_proxy_core::proxy::{bind, NodeSockets, Source};
use ambit_proxy_core::tls::{CertLifetime, CertStore, CertStoreOptions, MeshTls, Refusal, SystemClock};
use cert_support::ca::TestCa;
use cert_support::source::{Mode, TestSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TD: &str = "cluster.local";
/// Generous: the machine running the tests may be loaded.
const WAIT: Duration = Duration::from_secs(20);

fn id(namespace: &str, account: &str) -> SpiffeId {
    SpiffeId::new(TrustDomain::new(TD).unwrap(), namespace, account).unwrap()
}

fn store(source: &Arc<TestSource>) -> Arc<CertStore> {
    let options = CertStoreOptions { lifetime: CertLifetime::new(Duration::from_secs(3600)).unwrap(), ..Default::default() };
    Arc::new(CertStore::new(source.ca.bundle(TD), source.clone(), options).unwrap())
}

/// A "pod" echoing each connection's bytes back.
async fn echo_pod(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Node 2: the inbound server of `pod` (identity `identity`), with `tls`'s certificates.
struct Callee {
    addr: SocketAddr,
    metrics: Arc<HboneMetrics>,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn callee(tls: Arc<CertStore>, pod: SocketAddr, identity: &SpiffeId) -> Callee {
    let listener = bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let destination = MeshDestination { node: addr, identity: identity.clone(), on_this_node: true, guarded: false };
    let config = ProxyConfig { mesh: HashMap::from([(pod.ip(), destination)]), version: 1, ..ProxyConfig::default() };
    let metrics = Arc::new(HboneMetrics::default());
    let gate = InboundGate::new(ConfigHandle::new(config), Arc::new(AllowAll), metrics.clone());
    let shutdown = CancellationToken::new();
    tokio::spawn(Inbound::new(tls, gate, InboundOptions::default()).serve(listener, shutdown.clone()));
    Callee { addr, metrics, _shutdown: shutdown.drop_guard() }
}

/// Node 1's pool, presenting `caller` (already held by `tls`).
fn caller_pool(tls: Arc<CertStore>) -> Arc<HbonePool> {
    let options = PoolOptions { connect_timeout: Duration::from_secs(10), ..PoolOptions::default() };
    HbonePool::new(tls, Arc::new(NodeSockets), options, Arc::new(HboneMetrics::default()))
}

async fn held(store: &CertStore, identity: &SpiffeId) {
    tokio::time::timeout(WAIT, store.obtained(identity)).await.expect("certificate obtained");
    assert!(store.client_config(identity).is_ok(), "no certificate for {identity}");
}

/// Node 1 holding `frontend`'s certificate; node 2's store made from the same CA.
async fn nodes(source: &Arc<TestSource>, frontend: &SpiffeId) -> (Arc<CertStore>, Arc<CertStore>) {
    let node1 = store(source);
    node1.ensure([frontend.clone()]);
    held(&node1, frontend).await;
    (node1, store(source))
}

#[tokio::test]
async fn a_call_to_a_pod_whose_certificate_is_on_its_way_waits_for_it() {
    let source = TestSource::new(Arc::new(TestCa::new("mesh root", Arc::new(SystemClock))));
    let (frontend, catalog) = (id("shop", "frontend"), id("shop", "catalog"));
    let (node1, node2) = nodes(&source, &frontend).await;
    let pod = echo_pod("127.0.0.3").await;
    let callee = callee(node2.clone(), pod, &catalog).await;
    // The pod has just started: node 2's CA answers only after a while.
    source.set(Mode::Delayed(Duration::from_millis(1500)));
    node2.ensure([catalog.clone()]);
    assert!(node2.client_config(&catalog).is_err(), "node 2 already holds the pod's certificate");
    let key = TunnelKey { source: Source::Node, identity: frontend, node: callee.addr, expected: catalog.clone() };
    let pool = caller_pool(node1);
    let started = tokio::time::Instant::now();
    let opened = tokio::time::timeout(WAIT, pool.open(&key, pod, &CallContext::default())).await;
    let mut stream = opened.expect("the call hung").expect("the call failed while the certificate was on its way");
    assert!(node2.client_config(&catalog).is_ok(), "the tunnel opened before node 2 held the certificate");
    assert!(started.elapsed() >= Duration::from_millis(1000), "answered before the CA did: {:?}", started.elapsed());
    stream.write_all(b"first call").await.unwrap();
    let mut back = [0u8; 10];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back)).await.expect("echo timed out").unwrap();
    assert_eq!(&back, b"first call");
    assert_eq!(callee.metrics.refusals(Refusal::WrongIdentity), 0);
    assert_eq!(callee.metrics.refusals(Refusal::Handshake), 0);
}

#[tokio::test]
async fn a_call_to_an_identity_that_cannot_be_obtained_is_refused_without_waiting_for_the_timeout() {
    let source = TestSource::new(Arc::new(TestCa::new("mesh root", Arc::new(SystemClock))));
    let (frontend, catalog) = (id("shop", "frontend"), id("shop", "catalog"));
    let (node1, node2) = nodes(&source, &frontend).await;
    let pod = echo_pod("127.0.0.3").await;
    let callee = callee(node2.clone(), pod, &catalog).await;
    // The CA is down: the first attempt fails at once; the retry waits for a backoff.
    source.set(Mode::Unavailable);
    node2.ensure([catalog.clone()]);
    let key = TunnelKey { source: Source::Node, identity: frontend, node: callee.addr, expected: catalog };
    let started = tokio::time::Instant::now();
    let opened = tokio::time::timeout(WAIT, caller_pool(node1).open(&key, pod, &CallContext::default())).await;
    let result = opened.expect("the call hung");
    assert!(matches!(result, Err(TunnelError::Refused { reason: Refusal::WrongIdentity, .. })), "{result:?}");
    // Well under the inbound handshake timeout (10 s) and the caller's (10 s).
    assert!(started.elapsed() < Duration::from_secs(5), "refused only after {:?}", started.elapsed());
}
