//! The certificate store and mesh TLS: real rustls handshakes between the store's client
//! and server configurations over in-memory pipes; rotation, CA outages and expiry in
//! paused tokio time.

mod cert_support;

use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::identity::{SpiffeId, TrustDomain};
use ambit_proxy_core::tls::{
    peer_identity, server_name, CertLifetime, CertState, CertStore, CertStoreOptions, Clock, MeshTls, Refusal,
    SystemClock, TokioClock, TrustBundle,
};
use cert_support::ca::{TestCa, Validity};
use cert_support::handshake::{exchange, handshake, peer_serial, raw_client, raw_server, refusal};
use cert_support::source::{Mode, TestSource};

const TD: &str = "cluster.local";

fn id(namespace: &str, account: &str) -> SpiffeId {
    SpiffeId::new(TrustDomain::new(TD).unwrap(), namespace, account).unwrap()
}

fn store_with(source: &Arc<TestSource>, lifetime: Duration, clock: Arc<dyn Clock>) -> CertStore {
    let options = CertStoreOptions { lifetime: CertLifetime::new(lifetime).unwrap(), clock, ..Default::default() };
    CertStore::new(source.ca.bundle(TD), source.clone(), options).unwrap()
}

/// Polls (in tokio time) until `done`; panics after `limit`.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready(store: &CertStore) {
    until(Duration::from_secs(30), "certificates", || store.ready().is_ready()).await;
}

fn serial_of(store: &CertStore, identity: &SpiffeId) -> String {
    let status = store.status();
    let entry = status.certificates.iter().find(|c| &c.identity == identity).expect("identity held");
    entry.serial.clone().expect("a serial")
}

/// Two nodes' stores from one CA: a client on node 1 calls a server identity on node 2.
struct TwoNodes {
    source: Arc<TestSource>,
    node1: CertStore,
    node2: CertStore,
}

async fn two_nodes(clock: Arc<dyn Clock>, lifetime: Duration) -> TwoNodes {
    let source = TestSource::new(Arc::new(TestCa::new("mesh root", clock.clone())));
    let node1 = store_with(&source, lifetime, clock.clone());
    let node2 = store_with(&source, lifetime, clock);
    node1.ensure([id("shop", "frontend")]);
    node2.ensure([id("shop", "catalog"), id("shop", "payments")]);
    ready(&node1).await;
    ready(&node2).await;
    TwoNodes { source, node1, node2 }
}

#[tokio::test]
async fn mutual_tls_between_two_nodes_and_each_side_reads_the_others_identity() {
    let nodes = two_nodes(Arc::new(SystemClock), Duration::from_secs(3600)).await;
    for server_id in [id("shop", "catalog"), id("shop", "payments"), id("shop", "catalog")] {
        let client = nodes.node1.client_config(&id("shop", "frontend")).unwrap();
        let (client, server) =
            handshake(client, server_name(&server_id).unwrap(), nodes.node2.server_config()).await;
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        exchange(&mut client, &mut server, b"hello over mTLS").await.unwrap();
        assert_eq!(peer_identity(client.get_ref().1).unwrap(), server_id);
        assert_eq!(peer_identity(server.get_ref().1).unwrap(), id("shop", "frontend"));
        assert_eq!(client.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        // No resumption: every handshake verifies the peer's current certificate.
        assert_eq!(server.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Full));
        assert_eq!(peer_serial(server.get_ref().1), serial_of(&nodes.node1, &id("shop", "frontend")));
    }
    let status = nodes.node2.status();
    assert_eq!(status.certificates.len(), 2);
    assert!(status.certificates.iter().all(|c| c.state == CertState::Valid && c.not_after > c.not_before));
    let dump = serde_json::to_string(&status).unwrap();
    assert!(dump.contains("spiffe://cluster.local/ns/shop/sa/catalog") && !dump.contains("PRIVATE"), "{dump}");
}

/// The server's refusal of a hand-built client, and the reason it gives.
async fn server_refuses(nodes: &TwoNodes, client: Arc<rustls::ClientConfig>) -> Refusal {
    let name = server_name(&id("shop", "catalog")).unwrap();
    let (client, server) = handshake(client, name, nodes.node2.server_config()).await;
    let error = server.expect_err("the server accepted the client");
    // TLS 1.3: the client's handshake ends before the server has judged its
    // certificate; it learns of the refusal on its next read.
    if let Ok(mut client) = client {
        let mut buffer = [0u8; 1];
        let read = tokio::io::AsyncReadExt::read(&mut client, &mut buffer).await;
        assert!(!matches!(read, Ok(n) if n > 0), "the refused client read data");
    }
    refusal(&error)
}

#[tokio::test]
async fn the_server_refuses_bad_client_certificates_with_their_reason() {
    let nodes = two_nodes(Arc::new(SystemClock), Duration::from_secs(3600)).await;
    let ca = &nodes.source.ca;
    let frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    let foreign = TestCa::new("another root", Arc::new(SystemClock));
    let fresh = Validity::fresh(Duration::from_secs(3600));
    let cases = [
        ("expired", Some(ca.leaf(&[frontend], Validity::expired())), Refusal::Expired),
        ("foreign CA", Some(foreign.leaf(&[frontend], fresh)), Refusal::UnknownCa),
        ("foreign trust domain", Some(ca.leaf(&["spiffe://evil.example/ns/shop/sa/frontend"], fresh)), Refusal::ForeignTrustDomain),
        ("no SPIFFE ID", Some(ca.leaf(&[], fresh)), Refusal::NoIdentity),
        ("no client certificate", None, Refusal::NoClientCertificate),
    ];
    for (case, identity, expected) in cases {
        assert_eq!(server_refuses(&nodes, raw_client(identity)).await, expected, "{case}");
    }
}

#[tokio::test]
async fn the_client_refuses_bad_server_certificates_with_their_reason() {
    let nodes = two_nodes(Arc::new(SystemClock), Duration::from_secs(3600)).await;
    let ca = &nodes.source.ca;
    let catalog = "spiffe://cluster.local/ns/shop/sa/catalog";
    let foreign = TestCa::new("another root", Arc::new(SystemClock));
    let fresh = Validity::fresh(Duration::from_secs(3600));
    let cases = [
        ("expired", ca.leaf(&[catalog], Validity::expired()), Refusal::Expired),
        ("foreign CA", foreign.leaf(&[catalog], fresh), Refusal::UnknownCa),
        ("foreign trust domain", ca.leaf(&["spiffe://evil.example/ns/shop/sa/catalog"], fresh), Refusal::ForeignTrustDomain),
    ];
    for (case, (chain, key), expected) in cases {
        let client = nodes.node1.client_config(&id("shop", "frontend")).unwrap();
        let (client, _server) = handshake(client, server_name(&id("shop", "catalog")).unwrap(), raw_server(chain, key)).await;
        assert_eq!(refusal(&client.expect_err("the client accepted the server")), expected, "{case}");
    }
}

#[tokio::test]
async fn plaintext_and_unheld_identities_are_refused() {
    let nodes = two_nodes(Arc::new(SystemClock), Duration::from_secs(3600)).await;
    let (mut near, far) = tokio::io::duplex(4096);
    let accepting = tokio_rustls::TlsAcceptor::from(nodes.node2.server_config()).accept(far);
    tokio::io::AsyncWriteExt::write_all(&mut near, b"GET / HTTP/1.1\r\nHost: catalog\r\n\r\n").await.unwrap();
    assert_eq!(refusal(&accepting.await.expect_err("plaintext accepted")), Refusal::Plaintext);

    // node 2 holds no certificate for shop/frontend: SNI naming it is refused.
    let client = nodes.node1.client_config(&id("shop", "frontend")).unwrap();
    let (client, server) = handshake(client, server_name(&id("shop", "frontend")).unwrap(), nodes.node2.server_config()).await;
    assert_eq!(refusal(&server.expect_err("unheld identity served")), Refusal::WrongIdentity);
    assert_eq!(refusal(&client.expect_err("client saw no refusal")), Refusal::WrongIdentity);
    assert!(nodes.node1.client_config(&id("shop", "catalog")).is_err(), "node 1 holds no catalog certificate");
}

#[tokio::test(start_paused = true)]
async fn rotation_presents_new_certificates_and_keeps_established_streams() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let nodes = two_nodes(clock, Duration::from_secs(60)).await;
    let frontend = id("shop", "frontend");
    let name = server_name(&id("shop", "catalog")).unwrap();
    let (client, server) = handshake(nodes.node1.client_config(&frontend).unwrap(), name.clone(), nodes.node2.server_config()).await;
    let (mut long_client, mut long_server) = (client.unwrap(), server.unwrap());
    let mut serials = vec![serial_of(&nodes.node1, &frontend)];
    assert_eq!(peer_serial(long_server.get_ref().1), serials[0]);
    let mut issued_at = tokio::time::Instant::now();
    for rotation in 1..=3 {
        let previous = serials.last().unwrap().clone();
        until(Duration::from_secs(45), "a renewal", || serial_of(&nodes.node1, &frontend) != previous).await;
        // Renewed at 50 % ± 5 % of the 60 s lifetime (polled every 50 ms).
        let interval = issued_at.elapsed();
        assert!(interval >= Duration::from_secs(26) && interval <= Duration::from_secs(34), "renewed after {interval:?}");
        issued_at = tokio::time::Instant::now();
        let serial = serial_of(&nodes.node1, &frontend);
        let (client, server) = handshake(nodes.node1.client_config(&frontend).unwrap(), name.clone(), nodes.node2.server_config()).await;
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        assert_eq!(peer_serial(server.get_ref().1), serial, "rotation {rotation}: new handshakes present the new certificate");
        exchange(&mut client, &mut server, b"fresh").await.unwrap();
        exchange(&mut long_client, &mut long_server, b"still here").await.unwrap();
        serials.push(serial);
    }
    assert_eq!(serials.len(), 4);
    assert!(nodes.source.signed() >= 3 + 4, "initial issues and renewals: {}", nodes.source.signed());
    assert_eq!(nodes.node1.metrics().renewals(ambit_proxy_core::metrics::RenewalResult::Success) as usize, serials.len());
}

#[tokio::test(start_paused = true)]
async fn held_certificates_serve_until_expiry_while_the_ca_is_unreachable() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let nodes = two_nodes(clock, Duration::from_secs(60)).await;
    let frontend = id("shop", "frontend");
    let state = |store: &CertStore| store.status().certificates[0].state;
    nodes.source.set(Mode::Unavailable);
    until(Duration::from_secs(40), "a failed renewal", || nodes.node1.ready().ca_unreachable).await;
    assert_eq!(state(&nodes.node1), CertState::Renewing);
    assert!(nodes.node1.ready().is_ready(), "the held certificate still serves");
    assert!(nodes.node1.metrics().ca_unreachable());
    assert!(nodes.node1.status().certificates[0].last_error.as_deref().unwrap().contains("unavailable"));
    let name = server_name(&id("shop", "catalog")).unwrap();
    let (client, server) = handshake(nodes.node1.client_config(&frontend).unwrap(), name.clone(), nodes.node2.server_config()).await;
    exchange(&mut client.unwrap(), &mut server.unwrap(), b"served while the CA is down").await.unwrap();

    until(Duration::from_secs(40), "expiry", || state(&nodes.node1) == CertState::Expired).await;
    assert!(nodes.node1.client_config(&frontend).is_err(), "an expired certificate is not presented");
    assert_eq!(nodes.node1.ready().without_certificate, vec![frontend.clone()]);

    nodes.source.set(Mode::Sign);
    until(Duration::from_secs(120), "recovery", || state(&nodes.node1) == CertState::Valid).await;
    assert!(!nodes.node1.ready().ca_unreachable && !nodes.node1.metrics().ca_unreachable());
    assert!(nodes.node1.client_config(&frontend).is_ok());
}

#[tokio::test(start_paused = true)]
async fn unusable_answers_from_the_ca_are_refused() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let source = TestSource::new(Arc::new(TestCa::new("mesh root", clock.clone())));
    for mode in [Mode::WrongSan, Mode::OtherKey] {
        source.set(mode);
        let store = store_with(&source, Duration::from_secs(600), clock.clone());
        store.ensure([id("shop", "frontend")]);
        until(Duration::from_secs(10), "a failed attempt", || store.status().certificates[0].state == CertState::Failed).await;
        let error = store.status().certificates[0].last_error.clone().unwrap();
        assert!(error.contains("unusable chain"), "{mode:?}: {error}");
        assert!(!store.ready().is_ready() && !store.ready().ca_unreachable);
    }
}

#[tokio::test]
async fn ensure_adds_and_drops_identities() {
    let nodes = two_nodes(Arc::new(SystemClock), Duration::from_secs(3600)).await;
    nodes.node2.ensure([id("shop", "catalog")]);
    assert_eq!(nodes.node2.identities(), vec![id("shop", "catalog")]);
    assert!(nodes.node2.client_config(&id("shop", "payments")).is_err());
    let other_domain = SpiffeId::new(TrustDomain::new("other.example").unwrap(), "shop", "x").unwrap();
    nodes.node2.ensure([id("shop", "catalog"), id("shop", "cart"), other_domain]);
    assert_eq!(nodes.node2.identities(), vec![id("shop", "cart"), id("shop", "catalog")]);
    ready(&nodes.node2).await;
}

#[tokio::test]
async fn a_new_trust_bundle_takes_effect_for_new_handshakes_and_renews_certificates() {
    let nodes = two_nodes(Arc::new(SystemClock), Duration::from_secs(3600)).await;
    let next = TestCa::new("next root", Arc::new(SystemClock));
    let frontend = "spiffe://cluster.local/ns/shop/sa/frontend";
    let next_client = || raw_client(Some(next.leaf(&[frontend], Validity::fresh(Duration::from_secs(3600)))));
    assert_eq!(server_refuses(&nodes, next_client()).await, Refusal::UnknownCa, "before: the next root is not trusted");
    let signed = nodes.source.signed();

    // A CA rotation's first step: the bundle holds both roots.
    let both = TrustBundle::new(TrustDomain::new(TD).unwrap(), vec![nodes.source.ca.root(), next.root()]).unwrap();
    nodes.node2.set_trust_bundle(both).unwrap();
    let (client, server) = handshake(next_client(), server_name(&id("shop", "catalog")).unwrap(), nodes.node2.server_config()).await;
    let (mut client, mut server) = (client.unwrap(), server.expect("the next root is trusted now"));
    exchange(&mut client, &mut server, b"after the rotation").await.unwrap();
    assert_eq!(peer_identity(server.get_ref().1).unwrap(), id("shop", "frontend"));
    // Both of node 2's identities were renewed under the new bundle.
    until(Duration::from_secs(10), "renewals", || nodes.source.signed() >= signed + 2).await;
    ready(&nodes.node2).await;
    // Node 1 still trusts the old root only, and node 2's new certificates chain to it.
    let client = nodes.node1.client_config(&id("shop", "frontend")).unwrap();
    let (client, server) = handshake(client, server_name(&id("shop", "payments")).unwrap(), nodes.node2.server_config()).await;
    exchange(&mut client.unwrap(), &mut server.unwrap(), b"old and new").await.unwrap();

    // The trust domain cannot change.
    let error = nodes.node2.set_trust_bundle(next.bundle("other.example")).unwrap_err();
    assert!(error.to_string().contains("other.example"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_caller_can_wait_for_a_certificate_on_its_way() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let source = TestSource::new(Arc::new(TestCa::new("mesh root", clock.clone())));
    source.set(Mode::Delayed(Duration::from_millis(800)));
    let store = store_with(&source, Duration::from_secs(600), clock);
    let frontend = id("shop", "frontend");
    store.ensure([frontend.clone()]);
    assert!(store.client_config(&frontend).is_err(), "no certificate before the CA answers");
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), store.obtained(&frontend)).await.expect("the wait ends once issued");
    assert!(started.elapsed() >= Duration::from_millis(800), "returned before the CA answered: {:?}", started.elapsed());
    assert!(store.client_config(&frontend).is_ok(), "a certificate once the wait ended");
    // Held now: the wait ends at once.
    tokio::time::timeout(Duration::from_millis(1), store.obtained(&frontend)).await.expect("no wait once held");
}

#[tokio::test(start_paused = true)]
async fn the_wait_for_a_certificate_ends_when_the_attempt_fails_or_none_is_obtained() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let source = TestSource::new(Arc::new(TestCa::new("mesh root", clock.clone())));
    source.set(Mode::Unavailable);
    let store = store_with(&source, Duration::from_secs(600), clock);
    let frontend = id("shop", "frontend");
    store.ensure([frontend.clone()]);
    // The first attempt fails at once; its retry comes after a backoff of at least 0.5 s.
    tokio::time::timeout(Duration::from_millis(100), store.obtained(&frontend)).await.expect("a failed attempt ends the wait");
    assert!(store.client_config(&frontend).is_err());
    // An identity the store does not hold: nothing to wait for.
    tokio::time::timeout(Duration::from_millis(1), store.obtained(&id("shop", "elsewhere"))).await.expect("no wait");
}
