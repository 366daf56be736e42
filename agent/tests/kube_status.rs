//! Route status writing with leader election, against the in-test API server: two
//! agents' status loops, only the Lease holder writes, take-over after expiry.

#[path = "support/kube.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_agent::kubernetes::{lease, status, ClusterFeed, FeedOptions, LeaseConfig, LEASE_NAME};
use ambit_fake_apiserver::{FakeApiServer, Resource};
use serde_json::{json, Value};
use support::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_millis(1500);
const RENEW: Duration = Duration::from_millis(250);

/// One agent's status side: feed → translate → status loop, gated by its elector.
struct Agent {
    leading: watch::Receiver<bool>,
    ever_led: Arc<AtomicBool>,
    election: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Agent {
    async fn start(server: &FakeApiServer, identity: &str) -> Agent {
        let client = client(server).await;
        let config = LeaseConfig { lease_duration: LEASE, renew_interval: RENEW, ..LeaseConfig::new("ambit-system", identity) };
        let (leading, election) = lease::spawn(client.clone(), config, CancellationToken::new());
        let (status_tx, status_rx) = watch::channel(Arc::new(status::Desired::default()));
        let mut feed = ClusterFeed::start(client.clone(), FeedOptions { node_name: Some(NODE.into()), debounce: Duration::from_millis(20) });
        let pipeline = tokio::spawn(async move {
            while let Some(state) = feed.next().await {
                status_tx.send_replace(Arc::new(status::Desired::new(translate(&state).route_status, &state)));
            }
        });
        let writer = tokio::spawn(status::run(client, leading.clone(), status_rx, CancellationToken::new()));
        let ever_led = Arc::new(AtomicBool::new(false));
        let mut watch_leading = leading.clone();
        let flag = ever_led.clone();
        let observer = tokio::spawn(async move {
            loop {
                if *watch_leading.borrow_and_update() {
                    flag.store(true, Ordering::SeqCst);
                }
                if watch_leading.changed().await.is_err() {
                    return;
                }
            }
        });
        Agent { leading, ever_led, election, tasks: vec![pipeline, writer, observer] }
    }

    /// Dies without releasing the Lease (a crashed node).
    fn kill(&self) {
        self.election.abort();
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn wait_until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn holder(server: &FakeApiServer) -> Option<String> {
    server.get(Resource::Leases, "ambit-system", LEASE_NAME)?.pointer("/spec/holderIdentity")?.as_str().map(str::to_string)
}

fn ours(status: &Value) -> Vec<Value> {
    status["parents"].as_array().unwrap().iter().filter(|p| p["controllerName"] == "ambit.dev/mesh").cloned().collect()
}

#[tokio::test]
async fn only_the_leader_writes_and_the_other_takes_over_after_expiry() {
    let server = FakeApiServer::start().await.unwrap();
    server.apply(namespace("shop", true)).unwrap();
    server.apply(service("shop", "api", "10.96.0.10")).unwrap();
    server.apply(endpoint_slice("shop", "api", "10.0.0.9")).unwrap();
    // Another controller already reports on this route: its entry must survive.
    let other = json!({"parentRef": {"name": "gw"}, "controllerName": "example.com/gateway",
                       "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                                       "lastTransitionTime": "2024-01-01T00:00:00Z", "observedGeneration": 1}]});
    let mut route = http_route("shop", "api-route", "api", "/v1");
    route["status"] = json!({"parents": [other.clone()]});
    server.apply(route).unwrap();
    // A route without a Service parent gets no status from us.
    let mut gw_route = http_route("shop", "gw-route", "api", "/");
    gw_route["spec"]["parentRefs"] = json!([{"name": "gw"}]);
    server.apply(gw_route).unwrap();

    let a = Agent::start(&server, "agent-a").await;
    wait_until("agent-a leads", Duration::from_secs(5), || *a.leading.borrow()).await;
    let b = Agent::start(&server, "agent-b").await;
    assert_eq!(holder(&server).as_deref(), Some("agent-a"));

    wait_until("the first status write", Duration::from_secs(5), || !server.status_writes().is_empty()).await;
    // Both loops run for several renewals: one write in all (no churn, B never writes).
    tokio::time::sleep(RENEW * 6).await;
    let writes = server.status_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(!b.ever_led.load(Ordering::SeqCst));
    let write = &writes[0];
    assert_eq!((write.resource, write.namespace.as_str(), write.name.as_str()), (Resource::HttpRoutes, "shop", "api-route"));
    assert_eq!(write.status["parents"][0], other, "other controllers' entries are kept");
    let mine = ours(&write.status);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["parentRef"], json!({"group": "", "kind": "Service", "name": "api", "port": 80}));
    let accepted = mine[0]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Accepted").unwrap();
    assert_eq!((accepted["status"].as_str(), accepted["observedGeneration"].as_i64()), (Some("True"), Some(1)));
    assert!(accepted["lastTransitionTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    let gw_status = server.get(Resource::HttpRoutes, "shop", "gw-route").unwrap();
    assert!(gw_status.get("status").is_none(), "no status for a route without a Service parent");

    // The leader dies without releasing; the route changes meanwhile.
    a.kill();
    let died = Instant::now();
    server.apply(http_route("shop", "api-route", "api", "/v2")).unwrap();
    wait_until("agent-b takes over", LEASE * 4, || *b.leading.borrow()).await;
    let took = died.elapsed();
    assert!(took >= LEASE - RENEW, "took over after {took:?}, before the lease ({LEASE:?}) could expire");
    assert_eq!(holder(&server).as_deref(), Some("agent-b"));
    wait_until("agent-b writes generation 2", Duration::from_secs(5), || {
        server.status_writes().iter().any(|w| ours(&w.status).iter().any(|p| p["conditions"][0]["observedGeneration"] == 2))
    })
    .await;
    let last = server.get(Resource::HttpRoutes, "shop", "api-route").unwrap();
    assert_eq!(last["status"]["parents"][0], other);
    assert_eq!(ours(&last["status"]).len(), 1);
    // Settled again: no further writes.
    let count = server.status_writes().len();
    tokio::time::sleep(RENEW * 6).await;
    assert_eq!(server.status_writes().len(), count);
    b.kill();
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client(&server).await;
    let config = |id: &str| LeaseConfig { lease_duration: Duration::from_secs(30), renew_interval: RENEW, ..LeaseConfig::new("ambit-system", id) };
    let stop_a = CancellationToken::new();
    let (leading_a, task_a) = lease::spawn(client.clone(), config("agent-a"), stop_a.clone());
    let mut leading_a = leading_a;
    tokio::time::timeout(Duration::from_secs(5), leading_a.wait_for(|l| *l)).await.unwrap().unwrap();
    let (mut leading_b, _task_b) = lease::spawn(client, config("agent-b"), CancellationToken::new());
    tokio::time::sleep(RENEW * 3).await;
    assert!(!*leading_b.borrow());
    stop_a.cancel();
    task_a.await.unwrap();
    // Far less than the 30 s lease: the release hands over immediately.
    tokio::time::timeout(Duration::from_secs(3), leading_b.wait_for(|l| *l)).await.unwrap().unwrap();
    assert_eq!(holder(&server).as_deref(), Some("agent-b"));
}

#[tokio::test]
async fn a_route_deleted_and_created_again_at_once_gets_its_status_again() {
    let server = FakeApiServer::start().await.unwrap();
    server.apply(namespace("shop", true)).unwrap();
    server.apply(service("shop", "api", "10.96.0.10")).unwrap();
    server.apply(endpoint_slice("shop", "api", "10.0.0.9")).unwrap();
    server.apply(http_route("shop", "api-route", "api", "/v1")).unwrap();
    let agent = Agent::start(&server, "agent-a").await;
    let accepted = || {
        server.get(Resource::HttpRoutes, "shop", "api-route").is_some_and(|r| r.get("status").is_some_and(|s| ours(s).len() == 1))
    };
    wait_until("the first status write", Duration::from_secs(5), accepted).await;
    let first_uid = server.get(Resource::HttpRoutes, "shop", "api-route").unwrap()["metadata"]["uid"].clone();

    // Replaced within one feed debounce (as `kubectl replace --force` does): the agent
    // sees one snapshot in which the route is unchanged but is a new object, without status.
    server.delete(Resource::HttpRoutes, "shop", "api-route").unwrap();
    server.apply(http_route("shop", "api-route", "api", "/v1")).unwrap();
    let replaced = server.get(Resource::HttpRoutes, "shop", "api-route").unwrap();
    assert_ne!(replaced["metadata"]["uid"], first_uid);
    assert!(replaced.get("status").is_none());
    wait_until("the new route's status", Duration::from_secs(5), accepted).await;
    agent.kill();
}
