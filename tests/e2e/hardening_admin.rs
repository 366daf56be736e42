//! Tenant isolation of the agent itself (issue 11): a pod cannot reach the admin API's
//! dumps and switches, a regular-expression bomb in a route is refused with a status
//! and does not grow the agent, and a full eBPF map is reported while everything that
//! fits keeps being served; a pod whose cgroup is missing does not make the control
//! plane translate everything again every 250 ms. Needs root; fails (never skips)
//! without it.

mod support;

use std::time::Duration;

use ambit_e2e::{AgentOptions, ClientRequest, Pod, RunningAgent, TestBed};
use support::*;

const HEALTH_PORT: u16 = 15020;
const METRICS_PORT: u16 = 15090;
const ADMIN_PORT: u16 = 15021;

/// A bed with the standard world and an agent started with `args` (built from the bed,
/// which knows the node's address).
fn world_with(args: impl FnOnce(&TestBed) -> Vec<String>) -> World {
    let bed = TestBed::new().unwrap();
    bed.apply_yaml(WORLD).unwrap();
    let options = AgentOptions { extra_args: args(&bed), ..AgentOptions::default() };
    let agent = RunningAgent::start(&bed, &options).unwrap();
    World { agent, bed }
}

/// One request from `pod` to the node's address: (status, body) or the error text.
fn node_request(world: &World, pod: &Pod, method: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    let url = format!("http://{}:{port}{path}", world.bed.node_ip());
    let out = pod
        .run_client(&ClientRequest::http(url).method(method).timeout(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    if let Some(e) = out.error {
        return Err(e);
    }
    let r = out.only();
    match (&r.error, r.status) {
        (None, Some(status)) => Ok((status, r.body_text.clone())),
        (Some(e), _) => Err(e.clone()),
        (None, None) => Err("no status".into()),
    }
}

#[test]
fn a_pod_cannot_reach_admin_write_or_dump_endpoints() {
    let world = world_with(|bed| {
        vec![
            format!("--health-addr={}:{HEALTH_PORT}", bed.node_ip()),
            format!("--metrics-addr={}:{METRICS_PORT}", bed.node_ip()),
        ]
    });
    for pod in [world.client("mesh-a", "web").unwrap(), world.client("plain", "outsider").unwrap()] {
        let who = format!("{}/{}", pod.namespace, pod.name);
        // The admin API is on the node's loopback only: nothing answers on the node IP.
        for (method, path) in [("GET", "/config_dump"), ("POST", "/logging?level=trace"), ("POST", "/access_log?enabled=true")] {
            let answer = node_request(&world, &pod, method, ADMIN_PORT, path);
            assert!(answer.is_err(), "{who}: {method} {path} on the admin port answered {answer:?}");
        }
        // The health listener answers the probes, and nothing else.
        assert_eq!(node_request(&world, &pod, "GET", HEALTH_PORT, "/healthz").map(|a| a.0), Ok(200), "{who}");
        assert_eq!(node_request(&world, &pod, "GET", HEALTH_PORT, "/ready"), Ok((200, "ready\n".into())), "{who}");
        for (method, path) in [
            ("GET", "/config_dump"),
            ("GET", "/redirect"),
            ("GET", "/metrics"),
            ("GET", "/logging"),
            ("POST", "/logging?level=trace"),
            ("POST", "/access_log?enabled=true&sample=1"),
        ] {
            let status = node_request(&world, &pod, method, HEALTH_PORT, path).map(|a| a.0);
            assert_eq!(status, Ok(404), "{who}: {method} {path} on the health port");
        }
        assert_eq!(node_request(&world, &pod, "POST", HEALTH_PORT, "/ready").map(|a| a.0), Ok(405), "{who}");
        // The metrics listener serves /metrics only, which names no UID or cgroup.
        let (status, metrics) = node_request(&world, &pod, "GET", METRICS_PORT, "/metrics").unwrap();
        assert_eq!(status, 200, "{who}: {metrics}");
        assert!(metrics.contains("ambit_config_enrolled_workloads"), "{who}: {metrics}");
        let dump = world.agent.config_dump().unwrap();
        for w in dump["config"]["workloads"].as_array().unwrap() {
            let (uid, cgroup) = (w["uid"].as_str().unwrap(), w["cgroup"].to_string());
            assert!(!metrics.contains(uid) && !metrics.contains(&format!("\"{cgroup}\"")), "{who}: {w} in /metrics");
        }
        for (method, path) in [("GET", "/config_dump"), ("POST", "/logging?level=trace"), ("GET", "/ready")] {
            let status = node_request(&world, &pod, method, METRICS_PORT, path).map(|a| a.0);
            assert_eq!(status, Ok(404), "{who}: {method} {path} on the metrics port");
        }
    }
    // None of those attempts changed anything.
    assert_eq!(world.agent.admin("GET", "/logging").unwrap(), (200, "info\n".to_string()));
    assert_eq!(world.agent.admin("GET", "/access_log").unwrap().1.replace([' ', '\n'], ""), r#"{"enabled":false,"sample":1.0}"#);
}

#[test]
fn the_admin_api_refuses_a_non_loopback_address_without_the_explicit_flag() {
    let manifests = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(ambit_e2e::binaries::ambit_agent().unwrap())
        .args(["standalone", "--manifests"])
        .arg(manifests.path())
        .args(["--node-ip", "192.0.2.1", "--admin-addr", "192.0.2.1:15021", "--bpf-pin-dir", "/nonexistent/ambit-never"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("refusing to serve the admin API on non-loopback 192.0.2.1:15021"), "{stderr}");
}

const BOMB_ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: fine, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /ok}}]
    backendRefs: [{name: echo, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mixed, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/(a{1000}){1000}"}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{headers: [{type: RegularExpression, name: x-escape, value: "a)|(?:.*"}]}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /mixed}}]
    backendRefs: [{name: echo, port: 80}]
"#;

/// An HTTPRoute whose every rule is a pattern that the regex crate's default 10 MiB
/// limit accepts (about 5.6 MB compiled each) but Ambit's 1 MiB per-pattern limit does
/// not: without the limit, these 40 rules would hold over 200 MB.
fn heavy_route() -> String {
    let mut yaml = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: heavy, namespace: server}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: echo, port: 80}]\n  rules:\n",
    );
    for i in 0..40 {
        yaml.push_str(&format!(
            "  - matches: [{{path: {{type: RegularExpression, value: \"/h{i}/\\\\w{{100}}\"}}}}]\n    backendRefs: [{{name: echo, port: 80}}]\n"
        ));
    }
    yaml
}

#[test]
fn regex_bomb_is_rejected_with_status_and_memory_stays_bounded() {
    let world = World::start(AgentOptions::default()).unwrap();
    let web = world.client("mesh-a", "web").unwrap();
    assert_eq!(get(&web, "http://echo.server/"), Ok(200));
    let before = world.agent.rss_bytes().unwrap();

    world.bed.apply_yaml(BOMB_ROUTES).unwrap();
    world.bed.apply_yaml(&heavy_route()).unwrap();
    let status = |name: &str, type_: &str| {
        world.agent.config_dump().ok().and_then(|d| condition(&d, "HTTPRoute", "server", name, type_))
    };
    let rejected = Some(("False".to_string(), "UnsupportedValue".to_string()));
    let applied = wait_until(Duration::from_secs(10), || {
        status("heavy", "Accepted") == rejected && status("mixed", "PartiallyInvalid").is_some()
    });
    assert!(applied.is_some(), "routes not applied: {}", world.agent.log_tail(30));
    assert_eq!(status("mixed", "Accepted"), Some(("True".into(), "Accepted".into())));
    assert_eq!(status("mixed", "PartiallyInvalid"), Some(("True".into(), "UnsupportedValue".into())));
    assert_eq!(status("fine", "Accepted"), Some(("True".into(), "Accepted".into())));
    let dump = world.agent.config_dump().unwrap();
    let message = route_status(&dump, "HTTPRoute", "server", "mixed").unwrap().to_string();
    assert!(message.contains("per-pattern limit") && message.contains("rule 0") && message.contains("rule 1"), "{message}");

    // `ambit-agent check` reports the same, offline.
    let check = std::process::Command::new(ambit_e2e::binaries::ambit_agent().unwrap())
        .args(["check", "--manifests"])
        .arg(world.bed.manifests_dir())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success() && report.contains("per-pattern limit"), "{report}");

    // The other rules keep serving; the escaping header pattern matches nothing.
    assert_eq!(get(&web, "http://echo.server/ok"), Ok(200));
    assert_eq!(get(&web, "http://echo.server/mixed"), Ok(200));
    let escaped = web.run_client(&ClientRequest::http("http://echo.server/elsewhere").header("x-escape", "anything")).unwrap();
    assert_eq!(escaped.only().status, Some(404), "{escaped:?}");

    let after = world.agent.rss_bytes().unwrap();
    let grown = after.saturating_sub(before);
    assert!(grown < 48 << 20, "the agent grew by {} MiB ({before} -> {after} bytes)", grown >> 20);
    assert!(world.agent.log().contains("route rule dropped"), "{}", world.agent.log_tail(30));
}

/// `name{map="..."}` in the metrics text.
fn map_metric(metrics: &str, name: &str, map: &str) -> Option<f64> {
    let prefix = format!("{name}{{map=\"{map}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

#[test]
fn failed_map_sync_is_reported_and_enrollment_continues() {
    // Three pod cgroups fit: the two echo pods and `web`; `late` (created last, so with
    // the highest cgroup id, written last) does not.
    let world = world_with(|_| vec!["--bpf-map-capacity".into(), "3,1024".into()]);
    let web = world.client("mesh-a", "web").unwrap();
    assert_eq!(get(&web, "http://echo.server/"), Ok(200));
    let metrics = world.agent.admin("GET", "/metrics").unwrap().1;
    assert_eq!(map_metric(&metrics, "ambit_redirect_map_unsynced_entries", "AMBIT_ENROLLED"), Some(0.0), "{metrics}");

    let late = world.client("mesh-b", "late").unwrap();
    let reported = wait_until(Duration::from_secs(5), || {
        let metrics = world.agent.admin("GET", "/metrics").map(|a| a.1).unwrap_or_default();
        map_metric(&metrics, "ambit_redirect_map_unsynced_entries", "AMBIT_ENROLLED") == Some(1.0)
    });
    assert!(reported.is_some(), "never reported: {}", world.agent.log_tail(30));
    let metrics = world.agent.admin("GET", "/metrics").unwrap().1;
    assert!(map_metric(&metrics, "ambit_redirect_map_sync_errors_total", "AMBIT_ENROLLED") >= Some(1.0), "{metrics}");
    assert_eq!(map_metric(&metrics, "ambit_redirect_map_unsynced_entries", "AMBIT_SERVICES"), Some(0.0), "{metrics}");

    let dump = world.agent.config_dump().unwrap();
    assert_eq!(dump["mapSync"]["AMBIT_ENROLLED"]["unsynced"], 1, "{dump}");
    let problems = dump["problems"].to_string();
    assert!(problems.contains("AMBIT_ENROLLED: 1 entries not synced"), "{problems}");
    let (status, ready) = world.agent.admin("GET", "/ready").unwrap();
    assert!(status == 200 && ready.contains("degraded") && ready.contains("AMBIT_ENROLLED"), "{ready}");
    assert!(world.agent.log().contains("eBPF map sync incomplete"), "{}", world.agent.log_tail(30));

    // What fits keeps working, also after further changes; the overflow is not redirected.
    assert_eq!(get(&web, "http://echo.server/"), Ok(200));
    assert!(get(&late, "http://echo.server/").is_err(), "late is not in the map, so not redirected");
    world.bed.remove_pod("mesh-a", "web").unwrap();
    let fits = wait_until(Duration::from_secs(5), || get(&late, "http://echo.server/") == Ok(200));
    assert!(fits.is_some(), "late never enrolled after room was made: {}", world.agent.log_tail(30));
    let metrics = world.agent.admin("GET", "/metrics").unwrap().1;
    assert_eq!(map_metric(&metrics, "ambit_redirect_map_unsynced_entries", "AMBIT_ENROLLED"), Some(0.0), "{metrics}");
}

const GHOST: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ghost, namespace: mesh-a, uid: 00000000-0000-4000-8000-00000000dead}
spec:
  containers: [{name: c, image: none}]
status: {qosClass: BestEffort}
"#;

fn config_version(world: &World) -> Option<f64> {
    let metrics = world.agent.admin("GET", "/metrics").ok()?.1;
    metrics.lines().find_map(|l| l.strip_prefix("ambit_config_version ")).and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_missing_cgroup_is_looked_for_without_translating_everything_again() {
    let world = World::start(AgentOptions::default()).unwrap();
    let before = config_version(&world).unwrap();
    world.bed.apply_yaml(GHOST).unwrap();
    let applied = wait_until(Duration::from_secs(5), || config_version(&world) > Some(before));
    assert!(applied.is_some(), "the pod was never applied: {}", world.agent.log_tail(20));
    let version = config_version(&world);
    assert!(world.agent.log().contains("\"pending_cgroups\":1"), "the ghost pod is not pending: {}", world.agent.log_tail(20));
    // The retry runs every 250 ms while the cgroup is missing; each translation would
    // bump the version.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(config_version(&world), version, "{}", world.agent.log_tail(20));
}
