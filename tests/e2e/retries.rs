//! GEP-1731 retries end to end, for what the conformance cases (`tests/conformance/`)
//! cannot express: request bodies replayed over HTTP/1.1 and h2c, bodies over the
//! replay limit sent once, and the GEP-3388 budget stopping a retry storm. Real agent,
//! real eBPF, in the test bed. Needs root; fails (never skips) without it.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ambit_e2e::{AgentOptions, ClientRequest, Pod, RequestResult};
use support::{settled, wait_until, World};

/// One echo pod behind `echo` (so a retry reaches the pod that counted the failures),
/// on an HTTP/1.1 port and an h2c port.
const RETRY_WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: server, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mesh-a, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: server}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: echo
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: server}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: h2c, port: 8081, targetPort: 8080, appProtocol: kubernetes.io/h2c}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: retries, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /storm}}]
    retry: {attempts: 3, codes: [503], backoff: 1ms}
    backendRefs: [{name: echo, port: 80}]
  - retry: {attempts: 2, codes: [503], backoff: 10ms}
    backendRefs: [{name: echo, port: 80}]
"#;

/// A key no other request of this run carries.
fn fresh_key(what: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{what}-{nanos}")
}

fn one(pod: &Pod, request: ClientRequest) -> RequestResult {
    let out = pod.run_client(&request.timeout(Duration::from_secs(5))).unwrap();
    assert!(out.error.is_none(), "{out:?}");
    out.only().clone()
}

/// The requests the echo pod logged whose `x-echo-fail-key` is `key`.
fn logged_with_key(world: &World, client: &Pod, key: &str) -> Vec<serde_json::Value> {
    let echo = world.bed.first_pod("server", &[("app", "echo")]).unwrap();
    let log = one(client, ClientRequest::http(format!("http://{}:8080/__requests", echo.ipv4)));
    let entries = log.body.and_then(|b| b.as_array().cloned()).unwrap_or_default();
    entries.into_iter().filter(|e| e["headers"]["X-Echo-Fail-Key"][0] == key).collect()
}

fn started(world: &World) -> Pod {
    let client = world.client("mesh-a", "caller").unwrap();
    settled(world, &client, ClientRequest::http("http://echo.server/probe"), |r| r.status == Some(200));
    client
}

#[test]
fn request_bodies_are_replayed_over_http1_and_h2c_up_to_64_kib() {
    let world = World::start_with(RETRY_WORLD, AgentOptions::default()).unwrap();
    let client = started(&world);
    for (name, base, h2c) in [("http1", "http://echo.server", false), ("h2c", "http://echo.server:8081", true)] {
        let key = fresh_key(name);
        let mut request = ClientRequest::http(format!("{base}/body"))
            .method("POST")
            .body("replay-me")
            .header("x-echo-fail-key", key.clone())
            .header("x-echo-fail-times", "2");
        if h2c {
            request = request.h2c();
        }
        let r = one(&client, request);
        assert_eq!(r.status, Some(200), "{name}: {r:?}");
        let seen = logged_with_key(&world, &client, &key);
        assert_eq!(seen.len(), 3, "{name}: two failures and the success: {seen:#?}");
        assert!(seen.iter().all(|e| e["body"] == "replay-me"), "{name}: every attempt carries the body: {seen:#?}");
    }
    // Over the replay limit: sent once, and its failure reaches the caller.
    let key = fresh_key("large");
    let large = "x".repeat(70 * 1024);
    let request = ClientRequest::http("http://echo.server/large")
        .method("POST")
        .body(large)
        .header("x-echo-fail-key", key.clone())
        .header("x-echo-fail-times", "1");
    let r = one(&client, request);
    assert_eq!(r.status, Some(503), "{r:?}");
    let seen = logged_with_key(&world, &client, &key);
    assert_eq!(seen.len(), 1, "a body over 64 KiB is not retried: {} attempts", seen.len());
    assert_eq!(seen[0]["body_len"], 70 * 1024);
}

/// The sum of a metric's samples whose line contains every one of `filters`.
fn metric_sum(metrics: &str, name: &str, filters: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn the_retry_budget_stops_a_retry_storm() {
    let world = World::start_with(RETRY_WORLD, AgentOptions::default()).unwrap();
    let client = started(&world);
    // Every request fails with 503 and the rule asks for 3 retries each: without a
    // budget the backend would get 4 times the traffic.
    const REQUESTS: usize = 300;
    let key = fresh_key("storm");
    let storm = ClientRequest::http("http://echo.server/storm")
        .header("x-echo-fail-key", key.clone())
        .header("x-echo-fail-times", "1000000")
        .count(REQUESTS)
        .concurrency(8)
        .timeout(Duration::from_secs(5));
    let began = Instant::now();
    let out = client.run_client(&storm).unwrap();
    let took = began.elapsed();
    assert_eq!(out.results.len(), REQUESTS, "{:?}", out.error);
    assert!(out.results.iter().all(|r| r.status == Some(503)), "every request fails");
    let mut attempts = 0;
    wait_until(Duration::from_secs(3), || {
        attempts = logged_with_key(&world, &client, &key).len();
        attempts >= REQUESTS
    });
    // The budget: 20 % of the requests, plus at least 10 retries per second.
    let floor = 10.0 * (took.as_secs_f64().ceil() + 1.0);
    let allowed = REQUESTS as f64 * 1.2 + floor;
    assert!(
        (attempts as f64) <= allowed,
        "{attempts} attempts for {REQUESTS} requests in {took:?}: more than the budget's {allowed}"
    );
    assert!(attempts > REQUESTS, "some retries were made ({attempts} attempts)");
    let (_, metrics) = world.agent.admin("GET", "/metrics").unwrap();
    let refused = metric_sum(&metrics, "ambit_http_retries_refused_total{", &["reason=\"budget\"", "backend=\"server/echo:80\""]);
    let retried = metric_sum(&metrics, "ambit_http_retries_total{", &["reason=\"status\"", "backend=\"server/echo:80\""]);
    eprintln!("retry storm: {REQUESTS} requests, {attempts} attempts in {took:?}, {refused} retries refused by the budget");
    assert!(refused > 0.0, "the budget refused retries:\n{metrics}");
    assert_eq!(retried as usize, attempts - REQUESTS, "every retry is counted");
}
