//! AuthorizationPolicies through the in-test API server: the feed reads them, the
//! table follows them, and the elected agent writes each one's `Accepted` condition
//! (an invalid one `Accepted=False`, reason `Invalid`), the others unaffected.

#[path = "support/kube.rs"]
mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_agent::kubernetes::{lease, status, ClusterFeed, FeedOptions, LeaseConfig};
use ambit_fake_apiserver::{FakeApiServer, Resource};
use serde_json::{json, Value};
use support::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "ambit.dev/v1alpha1", "kind": "AuthorizationPolicy", "metadata": {"namespace": "shop", "name": name}, "spec": spec})
}

fn accepted(server: &FakeApiServer, name: &str) -> Option<(String, String, String)> {
    let object = server.get(Resource::AuthorizationPolicies, "shop", name)?;
    let c = object.pointer("/status/conditions/0")?;
    Some((c["status"].as_str()?.into(), c["reason"].as_str()?.into(), c["message"].as_str()?.into()))
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn policies_are_read_translated_and_given_a_status() {
    let server = FakeApiServer::start().await.unwrap();
    server.apply(namespace("shop", true)).unwrap();
    let mut checkout = pod("shop", "checkout", "u1", NODE);
    checkout["metadata"]["labels"] = json!({"app": "checkout"});
    server.apply(checkout).unwrap();
    let selector = json!([{"group": "", "kind": "Pod", "selector": {"matchLabels": {"app": "checkout"}}}]);
    server
        .apply(policy("allow-web", json!({"targetRefs": selector, "action": "ALLOW",
            "rules": [{"sources": [{"type": "Namespace", "namespace": "web"}]}]})))
        .unwrap();
    server
        .apply(policy("bad-selector", json!({"targetRefs": [{"group": "", "kind": "Pod",
            "selector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}}], "action": "ALLOW"})))
        .unwrap();

    let client = client(&server).await;
    let config = LeaseConfig { lease_duration: Duration::from_millis(1500), renew_interval: Duration::from_millis(250), ..LeaseConfig::new("ambit-system", "agent-a") };
    let (leading, _election) = lease::spawn(client.clone(), config, CancellationToken::new());
    let (status_tx, status_rx) = watch::channel(Arc::new(status::Desired::default()));
    let mut feed = ClusterFeed::start(client.clone(), FeedOptions { node_name: Some(NODE.into()), debounce: Duration::from_millis(20) });
    let snapshot = wait_for(&mut feed, "two policies", |s| s.authorization_policies.len() == 2).await;
    let (table_tx, table_rx) = watch::channel(None);
    let pipeline = tokio::spawn(async move {
        let mut state = Some(snapshot);
        loop {
            if let Some(state) = state.take() {
                let t = translate(&state);
                table_tx.send_replace(Some(t.config.authorization.clone()));
                status_tx.send_replace(Arc::new(status::Desired::new(t.route_status, &state).with_policies(t.policy_status)));
            }
            state = feed.next().await;
            if state.is_none() {
                return;
            }
        }
    });
    let writer = tokio::spawn(status::run(client, leading, status_rx, CancellationToken::new()));

    wait_until("both statuses", || accepted(&server, "allow-web").is_some() && accepted(&server, "bad-selector").is_some()).await;
    let (s, reason, _) = accepted(&server, "allow-web").unwrap();
    assert_eq!((s.as_str(), reason.as_str()), ("True", "Accepted"));
    let (s, reason, message) = accepted(&server, "bad-selector").unwrap();
    assert_eq!((s.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(message.contains("unknown operator \"Equals\""), "{message}");
    let pod_ip: IpAddr = "10.0.0.5".parse().unwrap();
    let names = |rx: &watch::Receiver<Option<Arc<ambit_proxy_core::authz::Authorization>>>| -> Vec<String> {
        rx.borrow().as_ref().and_then(|t| t.for_pod(pod_ip).cloned()).map(|w| w.policies.iter().map(|p| p.name.to_string()).collect()).unwrap_or_default()
    };
    assert_eq!(names(&table_rx), ["shop/allow-web"]);

    // Fixing the bad policy flips its condition and adds it to the table.
    server
        .apply(policy("bad-selector", json!({"targetRefs": [{"group": "", "kind": "Pod",
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["checkout"]}]}}], "action": "ALLOW"})))
        .unwrap();
    wait_until("the fixed policy is accepted", || accepted(&server, "bad-selector").is_some_and(|(s, _, _)| s == "True")).await;
    wait_until("the fixed policy is in the table", || names(&table_rx).len() == 2).await;
    let count = server.status_writes().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.status_writes().len(), count, "no churn once settled");
    pipeline.abort();
    writer.abort();
}
