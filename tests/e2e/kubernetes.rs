//! The agent's Kubernetes mode end to end: `ambit-agent run` in the bed's node namespace
//! watches the in-test API server, which mirrors the bed's objects ([`BedApiServer`]),
//! with real eBPF redirection. Enrollment, routes and route status go through `kubectl`
//! exactly as README's "Install on a cluster" says ([`Kubectl`]). Needs root and
//! kubectl; fails (never skips) without them.
//!
//! Enrollment timing is measured until the agent serves the new state (its admin API's
//! workloads, updated together with the connect hooks' map), then a new connection
//! confirms the behaviour. A connection that is not redirected learns that the cluster IP is
//! unreachable from the node's ICMP answer; the kernel sometimes only reports it after
//! retransmitting the SYN (1 s), so every attempt may take up to [`ATTEMPT_TIMEOUT`].

mod support;

use std::time::{Duration, Instant};

use ambit_e2e::bed::MESH_LABEL;
use ambit_e2e::{AgentMode, AgentOptions, BedApiServer, ClientRequest, Kubectl, Pod, PodSpec, RunningAgent, TestBed};
use ambit_fake_apiserver::Resource;
use anyhow::Result;
use support::*;

/// How soon a namespace label change must reach new connections.
const LABEL_CHANGE_LIMIT: Duration = Duration::from_secs(1);
/// How long one GET may take (longer than the SYN retransmission, see the module docs).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2500);

/// One GET to `echo.server` from `pod` (a new connection): the HTTP status or the error text.
fn attempt(pod: &Pod) -> Result<u16, String> {
    let out = pod
        .run_client(&ClientRequest::http("http://echo.server/toggle").timeout(ATTEMPT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    if let Some(e) = out.error {
        return Err(e);
    }
    let r = out.only();
    match (&r.error, r.status) {
        (None, Some(status)) => Ok(status),
        (Some(e), _) => Err(e.clone()),
        (None, None) => Err("no status".into()),
    }
}

struct KubeWorld {
    // Field order: the agent (and its eBPF pins) first, then the API server, then the bed.
    agent: RunningAgent,
    api: BedApiServer,
    bed: TestBed,
}

impl KubeWorld {
    fn start() -> Result<KubeWorld> {
        let bed = TestBed::new()?;
        bed.apply_yaml(WORLD)?;
        let api = BedApiServer::start(&bed)?;
        let options = AgentOptions {
            mode: AgentMode::Kubernetes { api_server: api.url() },
            access_log: true,
            ..AgentOptions::default()
        };
        let agent = RunningAgent::start(&bed, &options)?;
        Ok(KubeWorld { agent, api, bed })
    }

    fn namespace_labels(&self, namespace: &str) -> serde_json::Value {
        self.api.server().get(Resource::Namespaces, "", namespace).map(|n| n["metadata"]["labels"].clone()).unwrap_or_default()
    }
}

/// A GET that was redirected and answered.
fn redirected(result: &Result<u16, String>) -> bool {
    *result == Ok(200)
}

/// A GET that was not redirected: with no kube-proxy in the bed, the cluster IP is unreachable.
fn not_redirected(result: &Result<u16, String>) -> bool {
    matches!(result, Err(e) if e.contains("No route to host"))
}

#[test]
fn namespace_label_toggles_enrollment_within_a_second_through_the_api_server() {
    let world = KubeWorld::start().unwrap();
    let pod = world.bed.add_pod(PodSpec::new("toggle", "client").serve(false)).unwrap();
    world.api.sync().unwrap();
    assert!(world.api.server().get(Resource::Pods, "toggle", "client").is_some(), "the pod is in the API server");

    // Not enrolled: untouched, and with no kube-proxy the cluster IP is unreachable.
    let before = attempt(&pod);
    assert!(not_redirected(&before), "a pod of an unlabelled namespace must not be proxied: {before:?}");

    let kubectl = Kubectl::new(&world.bed, &world.api).unwrap();
    for round in 0..2 {
        // Timed from when kubectl returns: the label is then in the API server.
        kubectl.label_namespace("toggle", "ambit.dev/mesh=enabled").unwrap();
        let started = Instant::now();
        world.agent.wait_enrolled("toggle", "client", LABEL_CHANGE_LIMIT).unwrap();
        let took = started.elapsed();
        assert!(took <= LABEL_CHANGE_LIMIT, "round {round}: enrollment took {took:?}");
        let result = attempt(&pod);
        assert!(redirected(&result), "round {round}: not redirected once enrolled: {result:?}\n{}", world.agent.log_tail(30));
        eprintln!("round {round}: enrolled {took:?} after labelling");
        assert_eq!(world.namespace_labels("toggle")[MESH_LABEL.0], MESH_LABEL.1, "the label went through the API server");
        // The proxy attributes the connections to the pod it learned from the API server.
        let seen = wait_until(Duration::from_secs(2), || {
            world.agent.access_log().iter().any(|e| e["caller_pod"] == "client" && e["caller_namespace"] == "toggle")
        });
        assert!(seen.is_some(), "round {round}: no access-log event for toggle/client\n{}", world.agent.log_tail(20));

        kubectl.label_namespace("toggle", "ambit.dev/mesh-").unwrap();
        let started = Instant::now();
        world.agent.wait_not_enrolled("toggle", "client", LABEL_CHANGE_LIMIT).unwrap();
        let took = started.elapsed();
        assert!(took <= LABEL_CHANGE_LIMIT, "round {round}: leaving the mesh took {took:?}");
        eprintln!("round {round}: left the mesh {took:?} after unlabelling");
        assert!(world.namespace_labels("toggle").get(MESH_LABEL.0).is_none(), "the label removal went through the API server");
        let after = attempt(&pod);
        assert!(not_redirected(&after), "round {round}: redirected again after leaving the mesh: {after:?}");
    }
}

#[test]
fn the_agent_keeps_serving_across_an_api_server_restart_and_sees_later_changes() {
    let world = KubeWorld::start().unwrap();
    let pod = world.bed.add_pod(PodSpec::new("mesh-a", "steady").serve(false)).unwrap();
    world.agent.wait_enrolled("mesh-a", "steady", Duration::from_secs(5)).unwrap();
    assert_eq!(get(&pod, "http://echo.server/before"), Ok(200));

    world.api.restart().unwrap();
    // The data path does not depend on the API server.
    assert_eq!(get(&pod, "http://echo.server/during"), Ok(200), "{}", world.agent.log_tail(20));

    // The watches reconnect (with backoff) and later changes arrive.
    let late = world.bed.add_pod(PodSpec::new("mesh-b", "late").serve(false)).unwrap();
    world.agent.wait_enrolled("mesh-b", "late", Duration::from_secs(15)).unwrap();
    assert_eq!(get(&late, "http://echo.server/after"), Ok(200), "{}", world.agent.log_tail(20));
}

/// README's route as `kubectl apply -f my-httproute.yaml` would send it: a producer
/// route on Service `server/echo` port 80 that routes only `paths`.
fn my_route(paths: &[&str]) -> String {
    let matches: Vec<String> = paths.iter().map(|p| format!("{{path: {{type: PathPrefix, value: {p}}}}}")).collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: my-route, namespace: server}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo, port: 80}}]\n  rules:\n  - matches: [{}]\n    backendRefs: [{{name: echo, port: 80}}]\n",
        matches.join(", ")
    )
}

/// Polls GETs of `url` from `pod` until one answers `status`.
fn wait_status(pod: &Pod, url: &str, status: u16, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let result = get(pod, url);
        if result == Ok(status) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("GET {url}: {result:?}, expected {status} within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readme_kubectl_commands_enroll_route_and_report_status() {
    let world = KubeWorld::start().unwrap();
    let pod = world.bed.add_pod(PodSpec::new("shop", "client").serve(false)).unwrap();
    world.api.sync().unwrap();
    let kubectl = Kubectl::new(&world.bed, &world.api).unwrap();

    // kubectl label namespace shop ambit.dev/mesh=enabled
    kubectl.label_namespace("shop", "ambit.dev/mesh=enabled").unwrap();
    world.agent.wait_enrolled("shop", "client", Duration::from_secs(5)).unwrap();
    assert_eq!(world.namespace_labels("shop")[MESH_LABEL.0], MESH_LABEL.1);

    // kubectl apply -f my-httproute.yaml (created): only /routed is routed.
    let out = kubectl.apply_file("my-httproute.yaml", &my_route(&["/routed"])).unwrap();
    assert!(out.contains("created"), "{out}");
    wait_status(&pod, "http://echo.server/other", 404, Duration::from_secs(10)).unwrap();
    assert_eq!(get(&pod, "http://echo.server/routed"), Ok(200));
    // kubectl get httproute my-route -o jsonpath='{.status.parents}'
    let parents = kubectl.wait_route_accepted("httproute", "server", "my-route", Duration::from_secs(10)).unwrap();
    assert_eq!(parents[0]["controllerName"], "ambit.dev/mesh", "{parents}");

    // Applied again, changed (a merge patch of the custom resource): /other is routed too.
    let out = kubectl.apply_file("my-httproute.yaml", &my_route(&["/routed", "/other"])).unwrap();
    assert!(out.contains("configured"), "{out}");
    wait_status(&pod, "http://echo.server/other", 200, Duration::from_secs(10)).unwrap();
    let route = world.api.server().get(Resource::HttpRoutes, "server", "my-route").unwrap();
    assert_eq!(route["metadata"]["generation"], 2, "the spec changed once: {route}");
    kubectl.wait_route_accepted("httproute", "server", "my-route", Duration::from_secs(10)).unwrap();

    // kubectl delete -f: traffic is plain load balancing again.
    kubectl.delete_file("my-httproute.yaml").unwrap();
    wait_status(&pod, "http://echo.server/anything", 200, Duration::from_secs(10)).unwrap();
}

/// `kubectl get authorizationpolicy NAME -o jsonpath='{.status.conditions[0]}'`, parsed.
fn policy_condition(kubectl: &Kubectl<'_>, name: &str) -> Option<serde_json::Value> {
    let out = kubectl.run("server", &["get", "authorizationpolicy", name, "-o", "jsonpath={.status.conditions[0]}"]).ok()?;
    serde_json::from_str(out.trim()).ok()
}

#[test]
fn kubectl_applied_authorization_policies_get_their_accepted_condition() {
    let world = KubeWorld::start().unwrap();
    world.api.sync().unwrap();
    let kubectl = Kubectl::new(&world.bed, &world.api).unwrap();
    let policies = r#"
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: server}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchLabels: {app: echo}}}]
  action: ALLOW
  rules:
  - sources: [{type: ServiceAccount, serviceAccount: {namespace: shop, name: web}}]
---
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: bad-path, namespace: server}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {}}]
  action: DENY
  rules:
  - httpAttributes: {paths: [{type: Exact, value: "admin"}]}
"#;
    let out = kubectl.apply_file("policies.yaml", policies).unwrap();
    assert!(out.contains("created"), "{out}");
    let conditions = poll(Duration::from_secs(10), || {
        let good = policy_condition(&kubectl, "allow-web")?;
        let bad = policy_condition(&kubectl, "bad-path")?;
        Some((good, bad))
    });
    let (good, bad) = conditions.unwrap_or_else(|| panic!("no Accepted conditions after 10 s\n{}", world.agent.log_tail(30)));
    assert_eq!((good["type"].as_str(), good["status"].as_str(), good["reason"].as_str()), (Some("Accepted"), Some("True"), Some("Accepted")), "{good}");
    assert_eq!((bad["status"].as_str(), bad["reason"].as_str()), (Some("False"), Some("Invalid")), "{bad}");
    assert!(bad["message"].as_str().is_some_and(|m| m.contains("must start with `/`")), "{bad}");
    assert!(world.agent.log().contains("AuthorizationPolicy server/bad-path is invalid"), "{}", world.agent.log_tail(30));
}
