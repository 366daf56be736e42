//! Kubernetes mode's certificates end to end against the in-test API server: the signer
//! (`ambit_agent::signer::serve`, as `ambit-agent signer` runs it) and the agent's
//! `KubernetesCsr` source, each authenticated by its own bearer token, as pods' bound
//! service-account tokens authenticate them in a cluster.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ambit_agent::kubernetes::{client, ApiServer, CsrOptions, KubernetesCsr};
use ambit_agent::signer::{self, CaSigner, SignerOptions, SignerStats};
use ambit_fake_apiserver::{FakeApiServer, Resource, User};
use ambit_proxy_core::identity::{SpiffeId, TrustDomain};
use ambit_proxy_core::tls::{spiffe_id_of, CertificateSource, IssuedChain, SourceError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const AGENT_NS: &str = "ambit-system";

struct Cluster {
    server: FakeApiServer,
    dir: tempfile::TempDir,
    ca_pem: String,
    stats: Arc<SignerStats>,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A self-signed CA: (certificate PEM, key PEM).
fn test_ca() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "ambit signer test CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn pod(ns: &str, name: &str, sa: &str, node: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name},
           "spec": {"nodeName": node, "serviceAccountName": sa, "containers": [{"name": "app", "image": "app"}]},
           "status": {"phase": "Running"}})
}

/// The API server with agent tokens for node-1 and node-2, a workload's own token, an
/// agent token not bound to a pod; pods shop/catalog-1 (node-1) and shop/orders-1
/// (node-2); the signer running with a CA written as a CA directory.
async fn cluster(pod_grace: Duration) -> Cluster {
    let server = FakeApiServer::start().await.unwrap();
    let agent = || User::service_account(AGENT_NS, "ambit-agent");
    server.add_token("agent-node-1", agent().bound_to_pod("ambit-agent-a", "node-1"));
    server.add_token("agent-node-2", agent().bound_to_pod("ambit-agent-b", "node-2"));
    server.add_token("agent-unbound", agent());
    server.add_token("catalog-workload", User::service_account("shop", "catalog").bound_to_pod("catalog-1", "node-1"));
    server.add_token("signer", User::service_account(AGENT_NS, "ambit-signer").bound_to_pod("ambit-signer-0", "node-3"));
    server.apply(pod("shop", "catalog-1", "catalog", "node-1")).unwrap();
    server.apply(pod("shop", "orders-1", "orders", "node-2")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, key_pem) = test_ca();
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.path().join("ca-key.pem"), &key_pem).unwrap();
    let signer = CaSigner::from_dir(dir.path(), TrustDomain::new("cluster.local").unwrap(), Duration::from_secs(86400)).unwrap();
    let options = SignerOptions {
        policy: signer::Policy::new(TrustDomain::new("cluster.local").unwrap(), AGENT_NS, "ambit-agent", Duration::from_secs(86400)),
        bundle_namespace: AGENT_NS.into(),
        pod_grace,
    };
    let stats = Arc::new(SignerStats::default());
    let stop = CancellationToken::new();
    let signer_client = client_as(&server, dir.path(), "signer").await;
    tokio::spawn(signer::serve(signer_client, Arc::new(signer), options, stats.clone(), stop.clone()));
    Cluster { server, dir, ca_pem, stats, stop }
}

/// A kube client authenticating with `token` (through a kubeconfig, as a pod's would).
async fn client_as(server: &FakeApiServer, dir: &Path, token: &str) -> kube::Client {
    let path = dir.join(format!("kubeconfig-{token}"));
    server.write_kubeconfig_with_token(&path, token).unwrap();
    client(&ApiServer::Kubeconfig(path)).await.unwrap()
}

impl Cluster {
    async fn source(&self, token: &str, timeout: Duration) -> KubernetesCsr {
        KubernetesCsr::new(client_as(&self.server, self.dir.path(), token).await, CsrOptions { timeout, ..CsrOptions::default() })
    }

    fn csrs_left(&self) -> usize {
        self.server.list(Resource::CertificateSigningRequests, None).len()
    }
}

const CATALOG: &str = "spiffe://cluster.local/ns/shop/sa/catalog";

fn id(uri: &str) -> SpiffeId {
    uri.parse().unwrap()
}

/// A PEM PKCS#10 request with these URI SANs (the key stays here, as on a node).
fn request(uris: &[&str]) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    for uri in uris {
        params.subject_alt_names.push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(*uri).unwrap()));
    }
    let key = rcgen::KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// A request for `uri` whose signature was altered after signing (one base64 character
/// near the end of the DER, inside the signature, replaced).
fn tampered(uri: &str) -> String {
    let pem = request(&[uri]);
    let end = pem.find("-----END").unwrap();
    let mut body: Vec<char> = pem[..end].trim_end().chars().collect();
    // The 12th base64 character from the end (never a line break or padding).
    let at = body.iter().enumerate().rev().filter(|(_, c)| c.is_ascii_alphanumeric()).nth(11).map(|(i, _)| i).unwrap();
    body[at] = if body[at] == 'A' { 'B' } else { 'A' };
    format!("{}\n{}", body.into_iter().collect::<String>(), &pem[end..])
}

fn refusal(result: Result<IssuedChain, SourceError>) -> String {
    match result {
        Err(SourceError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_for_an_account_with_a_pod_on_the_requesters_node() {
    let cluster = cluster(Duration::from_secs(5)).await;
    let source = cluster.source("agent-node-1", WAIT).await;
    let issued = source.sign(&id(CATALOG), &request(&[CATALOG]), Duration::from_secs(3600)).await.unwrap();
    let leaf = &issued.chain[0];
    assert_eq!(spiffe_id_of(leaf).unwrap(), id(CATALOG));
    // Usable: a rustls client-certificate verifier rooted at the published CA accepts it.
    let ca = CertificateDer::from_pem_slice(cluster.ca_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
    verifier.verify_client_cert(leaf, &issued.chain[1..], UnixTime::now()).expect("the chain verifies against the CA");
    // The lifetime asked for (plus the signer's one-minute backdating).
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let validity = cert.validity();
    assert_eq!(validity.not_after.timestamp() - validity.not_before.timestamp(), 3600 + 60);
    assert_eq!(cluster.csrs_left(), 0, "the agent deletes its request once answered");
    assert_eq!(SignerStats::get(&cluster.stats.issued), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_account_without_a_pod_on_the_requesters_node() {
    let cluster = cluster(Duration::from_millis(300)).await;
    // orders runs on node-2 only.
    let source = cluster.source("agent-node-1", WAIT).await;
    let orders = "spiffe://cluster.local/ns/shop/sa/orders";
    let reason = refusal(source.sign(&id(orders), &request(&[orders]), Duration::from_secs(3600)).await);
    assert!(reason.contains("IdentityNotOnNode") && reason.contains("node-1"), "{reason}");
    // The agent on node-2 gets it.
    let node_2 = cluster.source("agent-node-2", WAIT).await;
    node_2.sign(&id(orders), &request(&[orders]), Duration::from_secs(3600)).await.unwrap();
    assert_eq!(SignerStats::get(&cluster.stats.denied), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_pod_that_appears_on_the_node_within_the_grace() {
    let cluster = cluster(Duration::from_secs(10)).await;
    let source = cluster.source("agent-node-2", WAIT).await;
    let server = &cluster.server;
    let (catalog, pem) = (id(CATALOG), request(&[CATALOG]));
    let (issued, _) = tokio::join!(source.sign(&catalog, &pem, Duration::from_secs(600)), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.apply(pod("shop", "catalog-2", "catalog", "node-2")).unwrap();
    });
    assert_eq!(spiffe_id_of(&issued.unwrap().chain[0]).unwrap(), id(CATALOG));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_requesters_that_are_not_a_node_bound_agent() {
    let cluster = cluster(Duration::from_millis(300)).await;
    for (token, expected) in [("catalog-workload", "RequesterNotAnAgent"), ("agent-unbound", "RequesterHasNoNode")] {
        let source = cluster.source(token, WAIT).await;
        let reason = refusal(source.sign(&id(CATALOG), &request(&[CATALOG]), Duration::from_secs(3600)).await);
        assert!(reason.contains(expected), "{token}: {reason}");
    }
    assert_eq!(SignerStats::get(&cluster.stats.denied), 2);
    assert_eq!(SignerStats::get(&cluster.stats.issued), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_forged_requests() {
    let cluster = cluster(Duration::from_millis(300)).await;
    let source = cluster.source("agent-node-1", WAIT).await;
    let other = "spiffe://cluster.local/ns/shop/sa/orders";
    let forged = [
        ("two SANs", request(&[CATALOG, other])),
        ("no SAN", request(&[])),
        ("not SPIFFE", request(&["https://catalog.shop/"])),
        ("bad signature", tampered(CATALOG)),
        ("not PKCS#10", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".to_string()),
    ];
    for (what, pem) in &forged {
        let reason = refusal(source.sign(&id(CATALOG), pem, Duration::from_secs(3600)).await);
        assert!(reason.contains("ForgedRequest"), "{what}: {reason}");
    }
    assert_eq!(SignerStats::get(&cluster.stats.forged), forged.len() as u64);
    let metrics = signer::endpoint::metrics(&cluster.stats);
    assert!(metrics.contains(&format!("ambit_signer_requests_denied_total{{reason=\"ForgedRequest\"}} {}", forged.len())), "{metrics}");
    // A foreign trust domain is refused too.
    let foreign = "spiffe://evil.example/ns/shop/sa/catalog";
    let reason = refusal(source.sign(&id(CATALOG), &request(&[foreign]), Duration::from_secs(3600)).await);
    assert!(reason.contains("ForeignTrustDomain"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_the_trust_bundle_for_agents() {
    let cluster = cluster(Duration::from_secs(1)).await;
    let agent = client_as(&cluster.server, cluster.dir.path(), "agent-node-1").await;
    let mut bundle = ambit_agent::kubernetes::watch_trust_bundle(agent, AGENT_NS);
    let first = tokio::time::timeout(WAIT, bundle.first()).await.expect("the bundle in time").unwrap();
    assert_eq!(first, vec![CertificateDer::from_pem_slice(cluster.ca_pem.as_bytes()).unwrap()]);
    let map = cluster.server.get(Resource::ConfigMaps, AGENT_NS, signer::TRUST_BUNDLE_CONFIGMAP).unwrap();
    assert_eq!(map["data"][signer::TRUST_BUNDLE_KEY], cluster.ca_pem);
    // A rotated CA reaches the agent.
    let (rotated, _) = test_ca();
    let mut updated = map.clone();
    updated["data"][signer::TRUST_BUNDLE_KEY] = json!(format!("{}{}", cluster.ca_pem, rotated));
    cluster.server.apply(updated).unwrap();
    let both = tokio::time::timeout(WAIT, bundle.bundle.wait_for(|b| b.as_ref().is_some_and(|b| b.len() == 2))).await;
    assert!(both.is_ok(), "the updated bundle did not arrive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signer_is_unavailable_and_leaves_no_request() {
    let server = FakeApiServer::start().await.unwrap();
    server.add_token("agent-node-1", User::service_account(AGENT_NS, "ambit-agent").bound_to_pod("a", "node-1"));
    let dir = tempfile::tempdir().unwrap();
    let source = KubernetesCsr::new(client_as(&server, dir.path(), "agent-node-1").await, CsrOptions { timeout: Duration::from_secs(1), ..CsrOptions::default() });
    match source.sign(&id(CATALOG), &request(&[CATALOG]), Duration::from_secs(600)).await {
        Err(SourceError::Unavailable(message)) => assert!(message.contains("no answer"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(server.list(Resource::CertificateSigningRequests, None).is_empty());
    // Shorter than the API server's minimum of 10 minutes: refused with its reason.
    let reason = refusal(source.sign(&id(CATALOG), &request(&[CATALOG]), Duration::from_secs(60)).await);
    assert!(reason.contains("expirationSeconds"), "{reason}");
    // An unreachable API server is Unavailable.
    server.stop().await;
    match source.sign(&id(CATALOG), &request(&[CATALOG]), Duration::from_secs(600)).await {
        Err(SourceError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// `ambit-agent signer` as the Deployment runs it (flags, CA directory, its own client),
/// answering an agent's request and publishing the bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signer_command_signs_and_publishes() {
    let server = FakeApiServer::start().await.unwrap();
    server.add_token("agent-node-1", User::service_account(AGENT_NS, "ambit-agent").bound_to_pod("a", "node-1"));
    server.apply(pod("shop", "catalog-1", "catalog", "node-1")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, key_pem) = test_ca();
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.path().join("ca-key.pem"), &key_pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut signer = tokio::process::Command::new(env!("CARGO_BIN_EXE_ambit-agent"))
        .args(["signer", "--api-server", &server.url(), "--trust-domain", "cluster.local", "--max-cert-lifetime", "1h"])
        .args(["--metrics-addr", &metrics_addr])
        .arg("--ca-dir")
        .arg(dir.path())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let source = KubernetesCsr::new(client_as(&server, dir.path(), "agent-node-1").await, CsrOptions { timeout: WAIT, ..CsrOptions::default() });
    let issued = source.sign(&id(CATALOG), &request(&[CATALOG]), Duration::from_secs(86400)).await.unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(issued.chain[0].as_ref()).unwrap();
    let validity = cert.validity();
    assert_eq!(validity.not_after.timestamp() - validity.not_before.timestamp(), 3600 + 60, "clamped to --max-cert-lifetime");
    let map = server.get(Resource::ConfigMaps, AGENT_NS, signer::TRUST_BUNDLE_CONFIGMAP).expect("the bundle is published");
    assert_eq!(map["data"][signer::TRUST_BUNDLE_KEY], ca_pem);
    let ready = get(&metrics_addr, "/ready").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = get(&metrics_addr, "/metrics").await;
    assert!(metrics.contains("ambit_signer_certificates_issued_total 1"), "{metrics}");
    signer.start_kill().unwrap();
    let _ = signer.wait().await;
}

/// Runs kubectl with `kubeconfig`; Ok(stdout) or Err(stderr).
fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("KUBECACHEDIR", kubeconfig.with_extension("cache"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running kubectl (is it installed?)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An administrator's view with kubectl: requests created as the node-1 agent (kubectl
/// sends no token over plain HTTP, so it impersonates it) end up Approved with a
/// certificate, or Denied with the signer's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_signers_answers() {
    let cluster = cluster(Duration::from_millis(300)).await;
    let admin = cluster.dir.path().join("admin-kubeconfig");
    cluster.server.write_kubeconfig(&admin).unwrap();
    let as_agent = cluster.dir.path().join("agent-kubeconfig");
    let impersonation = "  user:\n    as: system:serviceaccount:ambit-system:ambit-agent\n    as-groups: [system:serviceaccounts]\n    as-user-extra:\n      authentication.kubernetes.io/node-name: [node-1]\n";
    std::fs::write(&as_agent, std::fs::read_to_string(&admin).unwrap().replace("  user: {}\n", impersonation)).unwrap();
    let orders = "spiffe://cluster.local/ns/shop/sa/orders";
    for (name, uri) in [("catalog-on-node-1", CATALOG), ("orders-on-node-1", orders)] {
        let encoded = serde_json::to_value(k8s_openapi::ByteString(request(&[uri]).into_bytes())).unwrap();
        let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
                         "spec": {"signerName": signer::SIGNER_NAME, "request": encoded, "expirationSeconds": 3600, "usages": ["client auth", "server auth"]}});
        let path = cluster.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, csr.to_string()).unwrap();
        kubectl(&as_agent, &["create", "-f", path.to_str().unwrap()]).unwrap();
    }
    let jsonpath = "-o=jsonpath={.status.conditions[0].type} {.status.conditions[0].reason} {.status.certificate}";
    let answer = |name: &'static str| {
        let admin = admin.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let admin = admin.clone();
                let out = tokio::task::spawn_blocking(move || kubectl(&admin, &["get", "csr", name, jsonpath])).await.unwrap().unwrap();
                let done = out.starts_with("Denied") || (out.starts_with("Approved") && out.split(' ').nth(2).is_some_and(|c| !c.is_empty()));
                if done || tokio::time::Instant::now() > deadline {
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let approved = answer("catalog-on-node-1").await;
    assert!(approved.starts_with("Approved AmbitNodeAuthorized "), "{approved}");
    let denied = answer("orders-on-node-1").await;
    assert_eq!(denied.trim(), "Denied IdentityNotOnNode", "{denied}");
}

/// A plain HTTP/1.1 GET on loopback; the whole response.
async fn get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: signer\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Approval by someone else does not make the signer sign against its policy: a request
/// already Approved (e.g. by `kubectl certificate approve`) for an identity with no pod on
/// the requester's node is marked Failed, without a certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_against_the_policy_is_failed_not_signed() {
    let cluster = cluster(Duration::from_millis(300)).await;
    let orders = "spiffe://cluster.local/ns/shop/sa/orders";
    let encoded = serde_json::to_value(k8s_openapi::ByteString(request(&[orders]).into_bytes())).unwrap();
    cluster
        .server
        .apply(json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "pre-approved"},
                      "spec": {"signerName": signer::SIGNER_NAME, "request": encoded, "usages": ["client auth"],
                               "username": "system:serviceaccount:ambit-system:ambit-agent",
                               "extra": {signer::NODE_NAME_EXTRA: ["node-1"]}},
                      "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove"}]}}))
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        let csr = cluster.server.get(Resource::CertificateSigningRequests, "", "pre-approved").unwrap();
        let failed = csr["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Failed");
        if failed || tokio::time::Instant::now() > deadline {
            break csr["status"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let conditions = status["conditions"].as_array().unwrap();
    let failed = conditions.iter().find(|c| c["type"] == "Failed").unwrap_or_else(|| panic!("not failed: {status}"));
    assert_eq!(failed["reason"], "IdentityNotOnNode");
    assert!(status.get("certificate").is_none(), "{status}");
    assert_eq!(SignerStats::get(&cluster.stats.issued), 0);
}

#[test]
fn run_mesh_refuses_a_certificate_lifetime_under_ten_minutes_and_a_local_ca() {
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ambit-agent"))
            .args(["run", "--mesh", "--api-server", "http://127.0.0.1:9", "--node-ip", "127.0.0.1"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(&["--cert-lifetime", "5m"]);
    assert!(stderr.contains("--cert-lifetime 300s is shorter than Kubernetes signs (600s"), "{stderr}");
    let stderr = run(&["--ca-dir", "/nonexistent"]);
    assert!(stderr.contains("--ca-dir") && stderr.contains("standalone mode"), "{stderr}");
}

#[tokio::test]
async fn run_mesh_without_a_trust_bundle_gives_up_after_the_wait_with_a_clear_error() {
    let server = ambit_fake_apiserver::FakeApiServer::start().await.unwrap();
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ambit-agent"))
        .args(["run", "--mesh", "--trust-bundle-wait", "1s", "--api-server", &server.url(), "--node-ip", "127.0.0.1"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no trust bundle in ConfigMap ambit-system/ambit-trust-bundle after 1s") && stderr.contains("ambit-signer"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}
