//! The multi-node bed: nodes joined by a cluster network, pods placed on chosen
//! nodes, one real agent (real eBPF) per node, calls that cross nodes, and a
//! capture of the frames between nodes. Needs root; fails (never skips) without it.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambit_e2e::{AgentMode, AgentOptions, BedApiServer, BedOptions, ClientRequest, Pod, PodSpec, RunningAgent, TestBed, Wire};
use support::{call_ok, multi_node_bed, version, wait_until};

/// Today's wire between nodes; becomes `Wire::Hbone` once mutual TLS is wired in.
const CROSS_NODE_WIRE: Wire = Wire::Plaintext;

const ECHO_HTTP_PORT: u16 = ambit_e2e::echo_server::HTTP_PORT;

const SERVICES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: server, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mesh-a, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: server}
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: tcp, port: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v1, namespace: server}
spec:
  selector: {app: echo, version: v1}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: server}
spec:
  selector: {app: echo, version: v2}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
"#;


fn netns_with_prefix(prefix: &str) -> Vec<String> {
    ambit_e2e::netns::list().into_iter().filter(|n| n.starts_with(prefix)).collect()
}


fn listed_workload(agent: &RunningAgent, pod: &Pod) -> bool {
    let dump = agent.config_dump().unwrap();
    dump["config"]["workloads"]
        .as_array()
        .is_some_and(|ws| ws.iter().any(|w| w["namespace"] == pod.namespace.as_str() && w["name"] == pod.name.as_str()))
}

/// `pending_cgroups` of the agent's last "configuration applied" log event: pods it
/// enrols but whose cgroup it has not found.
fn last_pending_cgroups(agent: &RunningAgent) -> Option<u64> {
    agent
        .log()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "configuration applied")
        .and_then(|v| v["pending_cgroups"].as_u64())
}

#[test]
fn nodes_are_joined_placed_and_closed() {
    let bed = multi_node_bed(3);
    assert_eq!(bed.nodes().len(), 3);
    bed.apply_yaml(SERVICES).unwrap();
    let a = bed.add_pod(PodSpec::new("server", "a").label("app", "echo").on_node(1)).unwrap();
    let b = bed.add_pod(PodSpec::new("server", "b").label("app", "echo").on_node(2).service_account("echo-sa")).unwrap();
    let c = bed.add_pod(PodSpec::new("mesh-a", "c").on_node(3)).unwrap();
    assert!(bed.add_pod(PodSpec::new("mesh-a", "nowhere").on_node(4)).is_err(), "no node 4");
    let node2 = bed.node(2).unwrap();
    assert!(b.cgroup.starts_with(node2.cgroup_root()), "{}", b.cgroup.display());
    assert_eq!((b.node, b.node_name.as_str()), (2, node2.name()));
    assert_eq!(b.ipv4.octets()[..3], [10, 244, 32], "node 2's pod range");

    // Pod to pod across nodes, both families, no address translation.
    for (from, to) in [(&a, &b), (&b, &c), (&c, &a)] {
        let out = from.run_client(&ClientRequest::http(format!("http://{}:8080/", to.ipv4))).unwrap();
        assert_eq!(out.only().echo_pod(), Some(to.name.as_str()), "{out:#?}");
        assert_eq!(out.only().echo_caller_ip(), Some(from.ipv4.to_string().as_str()), "{out:#?}");
        let out = from.run_client(&ClientRequest::http(format!("http://[{}]:8080/", to.ipv6))).unwrap();
        assert_eq!(out.only().echo_pod(), Some(to.name.as_str()), "{out:#?}");
    }

    // Other nodes' addresses are reachable from pods (nothing listens there yet: refused, fast).
    for node in [bed.node(2).unwrap(), bed.node(3).unwrap()] {
        for addr in [format!("{}:15008", node.ipv4()), format!("[{}]:15008", node.ipv6())] {
            let out = a.run_client(&ClientRequest::tcp(&addr, "x").timeout(Duration::from_secs(5))).unwrap();
            let error = out.only().error.clone().unwrap_or_default();
            assert!(error.contains("refused"), "{addr} from node 1's pod: {out:#?}");
        }
    }
    // A node process reaches another node's pod too (from the node's own address).
    let out = bed
        .node_command_on(3, env!("CARGO_BIN_EXE_ambit-pod"))
        .unwrap()
        .args(["client", "--url", &format!("http://{}:8080/", b.ipv4)])
        .output()
        .unwrap();
    let out: ambit_e2e::ClientOutput = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.only().echo_pod(), Some("b"), "{out:#?}");
    assert_eq!(out.only().echo_caller_ip(), Some("10.77.0.3"), "{out:#?}");

    // Every node: no route out of the bed, cluster IPs unreachable (no kube-proxy).
    for node in bed.nodes() {
        for dst in ["192.0.2.1", "2001:db8::1", "10.96.0.10", "fd96::10"] {
            let out = std::process::Command::new("ip").args(["-n", node.netns(), "route", "get", dst]).output().unwrap();
            assert!(!out.status.success(), "node {} routes {dst}: {}", node.index(), String::from_utf8_lossy(&out.stdout));
        }
    }
    let svc = bed.service_ip("server", "echo").unwrap();
    let started = Instant::now();
    let out = c.run_client(&ClientRequest::http(format!("http://{svc}/")).timeout(Duration::from_secs(5))).unwrap();
    assert!(out.only().error.is_some(), "no agent, no kube-proxy: {out:#?}");
    assert!(started.elapsed() < Duration::from_secs(3), "cluster IP fails fast on node 3");

    // The manifests place pods on their nodes.
    let dir = bed.manifests_dir();
    let read = |f: &str| -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))).unwrap()
    };
    let pod = read("pod-server-b.yaml");
    assert_eq!(pod["spec"]["nodeName"].as_str(), Some(node2.name()));
    assert_eq!(pod["spec"]["serviceAccountName"].as_str(), Some("echo-sa"));
    assert_eq!(pod["status"]["hostIP"].as_str(), Some("10.77.0.2"));
    assert_eq!(pod["status"]["hostIPs"][1]["ip"].as_str(), Some("fd77::2"));
    assert_eq!(pod["status"]["podIPs"][0]["ip"].as_str(), Some(b.ipv4.to_string().as_str()));
    assert_eq!(read("pod-mesh-a-c.yaml")["spec"]["serviceAccountName"].as_str(), Some("default"));
    let slice = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("endpointslice-server-"))
        .map(|n| read(&n))
        .find(|s| s["addressType"] == "IPv4" && s["metadata"]["labels"]["kubernetes.io/service-name"] == "echo")
        .expect("echo's IPv4 slice");
    let nodes: Vec<(&str, &str)> = slice["endpoints"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["targetRef"]["name"].as_str().unwrap(), e["nodeName"].as_str().unwrap()))
        .collect();
    assert_eq!(nodes, [("a", bed.node(1).unwrap().name()), ("b", node2.name())]);

    // Deployments: spread over the nodes, or pinned by the template's nodeName.
    let pinned = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: pinned, namespace: mesh-a}}\nspec:\n  replicas: 2\n  template:\n    metadata: {{labels: {{app: pinned}}}}\n    spec: {{nodeName: {}, serviceAccountName: pinned-sa, containers: [{{name: c}}]}}\n",
        bed.node(3).unwrap().name()
    );
    bed.apply_yaml(&pinned).unwrap();
    let pods = bed.pods_matching("mesh-a", &[("app", "pinned")]);
    assert_eq!(pods.iter().map(|p| (p.node, p.service_account.as_str())).collect::<Vec<_>>(), [(3, "pinned-sa"); 2]);
    let lost = pinned.replace(bed.node(3).unwrap().name(), "elsewhere").replace("name: pinned", "name: lost");
    assert!(bed.apply_yaml(&lost).is_err(), "unknown nodeName");

    // Drop removes every node, the cluster network and every cgroup subtree.
    let id = bed.id().to_string();
    let roots: Vec<PathBuf> = bed.nodes().iter().map(|n| n.cgroup_root().to_path_buf()).collect();
    assert_eq!(netns_with_prefix(&format!("ambit-{id}-node")).len(), 3);
    assert!(bed.cluster_netns().is_some_and(|ns| netns_with_prefix(ns).len() == 1));
    drop(bed);
    assert!(netns_with_prefix(&format!("ambit-{id}-")).is_empty(), "netns of {id} left");
    for root in roots {
        assert!(!root.exists(), "{} left", root.display());
    }
}

#[test]
fn spread_deployments_use_every_node() {
    let bed = TestBed::with_options(BedOptions {
        pod_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_ambit-pod"))),
        nodes: 2,
        spread_deployments: true,
        ..Default::default()
    })
    .unwrap();
    bed.apply_yaml("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: n}\nspec:\n  replicas: 3\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c}]}\n").unwrap();
    let mut nodes: Vec<usize> = bed.pods_matching("n", &[("app", "d")]).iter().map(|p| p.node).collect();
    nodes.sort();
    assert_eq!(nodes, [1, 1, 2]);
    // The round-robin goes on across Deployments, so one-replica Deployments spread too.
    bed.apply_yaml("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: e, namespace: n}\nspec:\n  template:\n    metadata: {labels: {app: e}}\n    spec: {containers: [{name: c}]}\n").unwrap();
    assert_eq!(bed.first_pod("n", &[("app", "e")]).unwrap().node, 2);
}

#[test]
fn conformance_pods_spread_over_three_nodes() {
    // What `AMBIT_CONFORMANCE_NODES=3` gives the conformance suite.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/base-manifests.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bed = TestBed::with_options(BedOptions {
        pod_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_ambit-pod"))),
        nodes: 3,
        spread_deployments: true,
        ..Default::default()
    })
    .unwrap();
    bed.apply_yaml(&yaml).unwrap();
    let mut nodes: Vec<usize> = bed.pods().iter().map(|p| p.node).collect();
    nodes.sort();
    assert_eq!(nodes, [1, 2, 3]);
}

#[test]
fn stale_multi_node_beds_are_cleaned_up() {
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let id = format!("{pid_max}-9"); // pids are always below pid_max: a dead bed
    let names = [format!("ambit-{id}-node"), format!("ambit-{id}-node2"), format!("ambit-{id}-cluster")];
    for ns in &names {
        assert!(std::process::Command::new("ip").args(["netns", "add", ns]).status().unwrap().success());
    }
    let mount = ambit_e2e::cgroup::cgroup2_mount().unwrap();
    let roots = [mount.join(format!("ambit-bed-{id}")), mount.join(format!("ambit-bed-{id}-n2"))];
    for root in &roots {
        std::fs::create_dir_all(root.join("kubepods.slice")).unwrap();
    }
    // Beds starting in parallel clean up too, so check what is left rather than who removed it.
    ambit_e2e::bed::cleanup_stale().unwrap();
    for ns in &names {
        assert!(netns_with_prefix(ns).is_empty(), "{ns} left");
    }
    for root in &roots {
        assert!(!root.exists(), "{} left", root.display());
    }
}

#[test]
fn cross_node_call_goes_through_the_callers_agent() {
    let bed = multi_node_bed(2);
    bed.apply_yaml(SERVICES).unwrap();
    // The only endpoint is on node 2; node 2 also has a caller of its own.
    let echo = bed.add_pod(PodSpec::new("server", "echo-v1-0").label("app", "echo").label("version", "v1").on_node(2)).unwrap();
    let remote_client = bed.add_pod(PodSpec::new("mesh-a", "client-2").serve(false).on_node(2)).unwrap();
    let options = AgentOptions::default();
    let mut agents = RunningAgent::start_all(&bed, &options).unwrap();
    let client = bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).on_node(1)).unwrap();
    agents[0].wait_enrolled("mesh-a", "client-1", Duration::from_secs(5)).unwrap();
    agents[1].wait_enrolled("mesh-a", "client-2", Duration::from_secs(5)).unwrap();
    agents[1].wait_enrolled("server", "echo-v1-0", Duration::from_secs(5)).unwrap();

    // Each agent enrols only its own node's pods (it has seen all of them by now).
    assert!(!listed_workload(&agents[0], &remote_client), "node 1's agent enrolled a pod of node 2");
    assert!(!listed_workload(&agents[0], &echo), "node 1's agent enrolled a pod of node 2");
    assert!(!listed_workload(&agents[1], &client), "node 2's agent enrolled a pod of node 1");
    // ... and does not even look for the other node's pods' cgroups.
    for agent in &agents {
        assert_eq!(last_pending_cgroups(agent), Some(0), "node {}:\n{}", agent.node(), agent.log_tail(10));
    }

    // A call from node 1 to the Service, whose endpoint is on node 2, captured on the wire.
    let marker = format!("cross-node-{}", std::process::id());
    let capture = bed.capture(Duration::from_secs(30)).unwrap();
    let r = call_ok(&client, ClientRequest::http(format!("http://echo.server/{marker}")), &agents);
    let captured = capture.finish().unwrap();
    assert_eq!(r.echo_pod(), Some("echo-v1-0"), "{r:?}");
    assert_eq!(r.echo_caller_ip(), Some(client.ipv4.to_string().as_str()), "the caller's address is kept: {r:?}");
    if let Err(e) = captured.check_wire(marker.as_bytes(), ECHO_HTTP_PORT, CROSS_NODE_WIRE) {
        panic!("{e:#}");
    }
    if CROSS_NODE_WIRE == Wire::Plaintext {
        assert_eq!(captured.connections_to(ECHO_HTTP_PORT), 1, "one upstream connection from node 1 to the pod");
    }

    // IPv6, and the other node's agent serving its own caller (a same-node endpoint).
    let r = call_ok(&client, ClientRequest::http("http://echo.server/v6").ipv6(), &agents);
    assert_eq!(r.echo_pod(), Some("echo-v1-0"), "{r:?}");
    let r = call_ok(&remote_client, ClientRequest::http("http://echo.server/local"), &agents);
    assert_eq!(r.echo_pod(), Some("echo-v1-0"), "{r:?}");

    // Without its node's agent a caller is not served; once restarted it is again.
    agents[0].stop().unwrap();
    let stopped = support::get(&client, "http://echo.server/");
    assert!(stopped.is_err(), "no agent on node 1, yet answered: {stopped:?}");
    let r = call_ok(&remote_client, ClientRequest::http("http://echo.server/"), &agents[1..]);
    assert_eq!(r.echo_pod(), Some("echo-v1-0"), "node 2 is unaffected: {r:?}");
    let agent = &mut agents[0];
    agent.restart(&bed, &options).unwrap();
    let back = wait_until(Duration::from_secs(10), || support::get(&client, "http://echo.server/") == Ok(200));
    assert!(back.is_some(), "node 1's calls did not come back after its agent restarted:\n{}", agents[0].log_tail(30));
}

const GAMMA_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: by-header, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: echo-v2, port: 80}]
  - backendRefs: [{name: echo-v1, port: 80}]
"#;

#[test]
fn gamma_route_applies_on_the_callers_side_across_three_nodes() {
    let bed = multi_node_bed(3);
    bed.apply_yaml(SERVICES).unwrap();
    bed.add_pod(PodSpec::new("server", "echo-v1-0").label("app", "echo").label("version", "v1").on_node(2)).unwrap();
    bed.add_pod(PodSpec::new("server", "echo-v2-0").label("app", "echo").label("version", "v2").on_node(3)).unwrap();
    let agents = RunningAgent::start_all(&bed, &AgentOptions::default()).unwrap();
    let client = bed.add_pod(PodSpec::new("mesh-a", "client").serve(false).on_node(1)).unwrap();
    agents[0].wait_enrolled("mesh-a", "client", Duration::from_secs(5)).unwrap();
    bed.apply_yaml(GAMMA_ROUTE).unwrap();

    let all = |request: ClientRequest, want: &str| {
        let request = request.count(10).timeout(Duration::from_secs(2));
        wait_until(Duration::from_secs(10), || {
            client.run_client(&request).is_ok_and(|out| {
                out.results.len() == 10 && out.results.iter().all(|r| version(r) == Some(want))
            })
        })
        .unwrap_or_else(|| panic!("{request:?}: not all {want}; node 1's agent:\n{}", agents[0].log_tail(30)));
    };
    all(ClientRequest::http("http://echo.server/"), "v1");
    all(ClientRequest::http("http://echo.server/").header("x-version", "v2"), "v2");
    // Each reached its node from node 1 over the cluster network.
    for (path, request, want) in [
        ("/to-v1", ClientRequest::http("http://echo.server/to-v1"), "v1"),
        ("/to-v2", ClientRequest::http("http://echo.server/to-v2").header("x-version", "v2"), "v2"),
    ] {
        let capture = bed.capture(Duration::from_secs(30)).unwrap();
        let r = call_ok(&client, request, &agents);
        let captured = capture.finish().unwrap();
        assert_eq!(version(&r), Some(want), "{r:?}");
        if let Err(e) = captured.check_wire(path.as_bytes(), ECHO_HTTP_PORT, CROSS_NODE_WIRE) {
            panic!("{path}: {e:#}");
        }
    }
}

#[test]
fn kubernetes_mode_agents_on_every_node_share_the_api_server() {
    let bed = multi_node_bed(2);
    bed.apply_yaml(SERVICES).unwrap();
    let echo = bed.add_pod(PodSpec::new("server", "echo-v1-0").label("app", "echo").label("version", "v1").on_node(2)).unwrap();
    let api = BedApiServer::start(&bed).unwrap();
    let options = AgentOptions { mode: AgentMode::Kubernetes { api_server: api.url() }, ..AgentOptions::default() };
    // Declared after the API server: the agents stop first.
    let agents = RunningAgent::start_all(&bed, &options).unwrap();
    let client = bed.add_pod(PodSpec::new("mesh-a", "client").serve(false).on_node(1)).unwrap();
    agents[0].wait_enrolled("mesh-a", "client", Duration::from_secs(10)).unwrap();
    agents[1].wait_enrolled("server", "echo-v1-0", Duration::from_secs(10)).unwrap();
    assert!(!listed_workload(&agents[0], &echo), "node 1's agent enrolled a pod of node 2");
    assert!(!listed_workload(&agents[1], &client), "node 2's agent enrolled a pod of node 1");
    let r = call_ok(&client, ClientRequest::http("http://echo.server/k8s"), &agents);
    assert_eq!(r.echo_pod(), Some("echo-v1-0"), "{r:?}");
}
