//! The conformance harness's pod-address placeholder (`{pod-ip:<app>-<version>}` in
//! `request.host`, see `shared/conformance/README.md`) against a real bed and agent: on
//! the shared base manifests with a route that sends Service `echo` to `echo-v1` only,
//! a request to `{pod-ip:echo-v2}:8080` reaches echo-v2 (pod traffic is not routed),
//! while one to `echo` reaches echo-v1. Needs root; fails (never skips) without it.

use std::time::{Duration, Instant};

use ambit_e2e::conformance::case::conformance_dir;
use ambit_e2e::conformance::placeholder::{resolve_in_bed, POD_IP_NAMESPACE};
use ambit_e2e::{AgentOptions, ClientRequest, Pod, RunningAgent, TestBed};

const ONLY_V1: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: only-v1, namespace: gateway-conformance-mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - backendRefs: [{name: echo-v1, port: 80}]
"#;

/// The pod that answered GET `http://<host>/` from `client`, polled until it is
/// `expected` or `limit` passes (the route takes effect asynchronously).
fn wait_answered_by(client: &Pod, host: &str, expected: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let out = client.run_client(&ClientRequest::http(format!("http://{host}/")).timeout(Duration::from_secs(5)));
        let answered = out.map_err(|e| e.to_string()).map(|o| o.only().echo_pod().unwrap_or_default().to_string());
        if answered.as_ref().is_ok_and(|pod| pod.starts_with(expected)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("GET http://{host}/: answered by {answered:?}, expected {expected}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_pod_ip_placeholder_reaches_that_pod_and_no_route_applies() {
    let bed = TestBed::new().unwrap();
    let base = std::fs::read_to_string(conformance_dir().join("base-manifests.yaml")).unwrap();
    bed.apply_yaml(&base).unwrap();
    bed.enroll_namespace(POD_IP_NAMESPACE).unwrap();
    bed.apply_yaml(ONLY_V1).unwrap();
    let agent = RunningAgent::start(&bed, &AgentOptions::default()).unwrap();
    let client = bed.first_pod(POD_IP_NAMESPACE, &[("app", "echo"), ("version", "v1")]).unwrap();
    let v2 = bed.first_pod(POD_IP_NAMESPACE, &[("app", "echo"), ("version", "v2")]).unwrap();

    let host = resolve_in_bed(&bed, "{pod-ip:echo-v2}:8080").unwrap();
    assert_eq!(host, format!("{}:8080", v2.ipv4));

    let limit = Duration::from_secs(30);
    wait_answered_by(&client, "echo", "echo-v1", limit).unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(20)));
    // The route is in force: every request to the Service goes to echo-v1 (both
    // versions would answer without it) and every one to echo-v2's address to echo-v2.
    for (target, expected) in [("echo", "echo-v1"), (host.as_str(), "echo-v2")] {
        for _ in 0..10 {
            wait_answered_by(&client, target, expected, Duration::ZERO).unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(20)));
        }
    }
    assert!(resolve_in_bed(&bed, "{pod-ip:echo-v9}").is_err(), "no such pod");
    drop(agent);
}
