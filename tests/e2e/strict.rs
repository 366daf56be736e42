//! STRICT and PERMISSIVE mesh modes on the multi-node bed, with real agents (mesh on:
//! `--ca-dir`) and the real kernel guard: plaintext to a STRICT pod is dropped in the
//! kernel whether it comes from a pod outside the mesh, a hostNetwork process of the
//! pod's node or one of another node; a kubelet-style probe (a node process in the
//! agent's `--probe-cgroup`) and mesh calls (same node and across nodes) still work;
//! PERMISSIVE accepts the same plaintext clients; relabelling the namespace switches; a
//! pod an ALLOW AuthorizationPolicy selects is guarded in PERMISSIVE mode too.
//! Needs root; fails (never skips) without it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ambit_e2e::{AgentOptions, ClientOutput, ClientRequest, MeshCa, Pod, PodSpec, RunningAgent, TestBed};
use support::mesh::spiffe;
use support::{call_ok, multi_node_bed, wait_until};

const MODE_LABEL: &str = "ambit.dev/mesh-mode";
/// The guard drops the SYN: a client's connect must not succeed within this.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: locked, labels: {ambit.dev/mesh: enabled, ambit.dev/mesh-mode: strict}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mesh-a, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: locked}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
"#;

/// An ALLOW policy for the echo pod: mesh callers of `mesh-a/web` only.
const ALLOW_WEB: &str = r#"
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-only, namespace: locked}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchLabels: {app: echo}}}]
  action: ALLOW
  rules:
  - sources: [{type: ServiceAccount, serviceAccount: {namespace: mesh-a, name: web}}]
"#;

/// Each node's kubelet-style probe cgroup, relative to its cgroup root.
const PROBE_CGROUP: &str = "kubelet.slice";

/// How a plaintext client fared.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    /// No connection within the timeout (the SYN was dropped).
    Dropped,
    Other(String),
}

fn outcome(out: &ClientOutput) -> Outcome {
    let r = out.only();
    match (&out.error, r.status, &r.error) {
        (None, Some(200), None) => Outcome::Accepted,
        (_, None, Some(e)) if e.contains("timed out") => Outcome::Dropped,
        _ => Outcome::Other(format!("{out:?}")),
    }
}

fn request(target: &Pod) -> ClientRequest {
    ClientRequest::http(format!("http://{}:8080/plain", target.ipv4)).timeout(REFUSAL_TIMEOUT)
}

/// A plaintext request from a pod (outside the mesh: nothing redirects it).
fn from_pod(client: &Pod, target: &Pod) -> Outcome {
    outcome(&client.run_client(&request(target)).unwrap())
}

/// A plaintext request from a node process of `node` in `cgroup` (None: a fresh,
/// untrusted one, like any hostNetwork process).
fn from_node(bed: &TestBed, node: usize, cgroup: Option<&Path>, target: &Pod) -> Outcome {
    let pod_bin = env!("CARGO_BIN_EXE_ambit-pod");
    let mut cmd = match cgroup {
        Some(cg) => bed.node_command_in(node, cg, pod_bin).unwrap(),
        None => bed.node_command_on(node, pod_bin).unwrap(),
    };
    let out = cmd.arg("client").args(request(target).to_args()).output().unwrap();
    match serde_json::from_slice::<ClientOutput>(&out.stdout) {
        Ok(parsed) => outcome(&parsed),
        Err(e) => Outcome::Other(format!("{e}: {}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// `ambit_strict_drops_total{reason}` of an agent.
fn drops(agent: &RunningAgent, reason: &str) -> u64 {
    let (status, metrics) = agent.admin("GET", "/metrics").unwrap();
    assert_eq!(status, 200);
    let prefix = format!("ambit_strict_drops_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Whether the agent guards `pod` in the kernel (its addresses and interface, with no
/// guarded address left unresolved) and marks it guarded in the mesh table.
fn guarded(agent: &RunningAgent, pod: &Pod) -> bool {
    let Ok(dump) = agent.config_dump() else { return false };
    let ip = pod.ipv4.to_string();
    let in_mesh = dump["config"]["mesh"].as_array().into_iter().flatten().any(|e| e["pod"] == ip.as_str() && e["guarded"] == true);
    in_mesh && dump["strict"]["interfaces"].as_u64() >= Some(1) && dump["strict"]["unresolved"].as_u64() == Some(0)
}

fn probe_cgroups(bed: &TestBed) -> Vec<PathBuf> {
    bed.nodes().iter().map(|n| n.cgroup_root().join(PROBE_CGROUP)).collect()
}

/// Agents with the mesh on, trusting every node's probe cgroup (paths relative to the
/// cgroup2 mount, as `--probe-cgroup` takes them).
fn agents(bed: &TestBed, ca: &MeshCa) -> Vec<RunningAgent> {
    let mount = ambit_e2e::cgroup::cgroup2_mount().unwrap();
    let mut extra_args = ca.agent_args();
    for cg in probe_cgroups(bed) {
        std::fs::create_dir_all(&cg).unwrap();
        extra_args.push("--probe-cgroup".to_string());
        extra_args.push(cg.strip_prefix(&mount).unwrap().display().to_string());
    }
    RunningAgent::start_all(bed, &AgentOptions { access_log: true, extra_args, ..AgentOptions::default() }).unwrap()
}

#[test]
fn strict_pods_accept_only_the_mesh_and_probes_and_permissive_accepts_plaintext() {
    let bed = multi_node_bed(2);
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca")).unwrap();
    bed.apply_yaml(OBJECTS).unwrap();
    let server = bed.add_pod(PodSpec::new("locked", "echo-0").label("app", "echo").service_account("echo").on_node(1)).unwrap();
    let outsider = bed.add_pod(PodSpec::new("plain", "outsider").serve(false).on_node(1)).unwrap();
    let agents = agents(&bed, &ca);
    let near = bed.add_pod(PodSpec::new("mesh-a", "near").serve(false).service_account("web").on_node(1)).unwrap();
    let far = bed.add_pod(PodSpec::new("mesh-a", "far").serve(false).service_account("web").on_node(2)).unwrap();
    agents[0].wait_enrolled("mesh-a", "near", Duration::from_secs(5)).unwrap();
    agents[1].wait_enrolled("mesh-a", "far", Duration::from_secs(5)).unwrap();
    support::mesh::wait_for_certificates(&agents[0], &[spiffe("mesh-a", "web"), spiffe("locked", "echo")], Duration::from_secs(10));
    support::mesh::wait_for_certificates(&agents[1], &[spiffe("mesh-a", "web")], Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(10), || guarded(&agents[0], &server)).is_some(),
        "node 1 does not guard the STRICT pod:\n{}\n{}",
        agents[0].config_dump().map(|d| d["strict"].to_string()).unwrap_or_default(),
        agents[0].log_tail(30)
    );
    let probe_cg = &probe_cgroups(&bed)[0];

    // STRICT: plaintext is dropped from a pod outside the mesh, a hostNetwork process of
    // the pod's node and one of another node; each drop is counted.
    let forwarded = drops(&agents[0], "forwarded");
    assert_eq!(from_pod(&outsider, &server), Outcome::Dropped, "pod outside the mesh");
    assert_eq!(from_node(&bed, 2, None, &server), Outcome::Dropped, "hostNetwork process of node 2");
    assert!(drops(&agents[0], "forwarded") >= forwarded + 2, "forwarded drops not counted");
    let untrusted = drops(&agents[0], "untrusted_socket");
    assert_eq!(from_node(&bed, 1, None, &server), Outcome::Dropped, "hostNetwork process of node 1");
    assert!(drops(&agents[0], "untrusted_socket") > untrusted, "the local process's drop is not counted");
    // A kubelet-style probe on the pod's node gets through.
    assert_eq!(from_node(&bed, 1, Some(probe_cg), &server), Outcome::Accepted, "probe from the probe cgroup");
    // Mesh calls keep working; same-node calls now come from the node (the proxy dials
    // guarded pods from its own namespace).
    let r = call_ok(&near, ClientRequest::http("http://echo.locked/near"), &agents);
    assert_eq!(r.echo_caller_ip(), Some(ambit_e2e::bed::POD_GATEWAY_V4.to_string().as_str()), "{r:?}");
    call_ok(&far, ClientRequest::http("http://echo.locked/far"), &agents);

    // A STRICT pod that starts later, on the other node, is guarded there too.
    let late = bed.add_pod(PodSpec::new("locked", "late").label("app", "late").on_node(2)).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || guarded(&agents[1], &late)).is_some(),
        "node 2 does not guard the new STRICT pod:\n{}",
        agents[1].log_tail(30)
    );
    assert_eq!(from_pod(&outsider, &late), Outcome::Dropped, "pod outside the mesh, across nodes");
    assert_eq!(from_node(&bed, 1, None, &late), Outcome::Dropped, "hostNetwork process of node 1 to node 2's pod");
    assert!(drops(&agents[1], "forwarded") >= 2, "node 2 counted no drop");

    // PERMISSIVE: the label switch takes effect, the same plaintext clients are accepted.
    bed.label_namespace("locked", MODE_LABEL, Some("permissive")).unwrap();
    let switched = wait_until(Duration::from_secs(20), || from_pod(&outsider, &server) == Outcome::Accepted);
    assert!(switched.is_some(), "PERMISSIVE not applied:\n{}", agents[0].log_tail(30));
    assert_eq!(from_node(&bed, 1, None, &server), Outcome::Accepted, "hostNetwork process of node 1");
    assert_eq!(from_node(&bed, 2, None, &server), Outcome::Accepted, "hostNetwork process of node 2");
    assert_eq!(from_pod(&outsider, &late), Outcome::Accepted, "pod outside the mesh, across nodes");
    let r = call_ok(&near, ClientRequest::http("http://echo.locked/near"), &agents);
    assert_eq!(r.echo_caller_ip(), Some(near.ipv4.to_string().as_str()), "permissive: the caller's address is kept: {r:?}");
    call_ok(&far, ClientRequest::http("http://echo.locked/far"), &agents);

    // Back to STRICT.
    bed.label_namespace("locked", MODE_LABEL, Some("strict")).unwrap();
    let locked = wait_until(Duration::from_secs(20), || from_pod(&outsider, &server) == Outcome::Dropped);
    assert!(locked.is_some(), "STRICT not applied again:\n{}", agents[0].log_tail(30));
    assert_eq!(from_node(&bed, 2, None, &server), Outcome::Dropped, "hostNetwork process of node 2");
    call_ok(&far, ClientRequest::http("http://echo.locked/far"), &agents);

    // PERMISSIVE again, but an ALLOW policy selects the pod: a plaintext caller has no
    // identity a rule could allow, so the kernel guards it as if it were STRICT.
    bed.label_namespace("locked", MODE_LABEL, Some("permissive")).unwrap();
    assert!(wait_until(Duration::from_secs(20), || from_pod(&outsider, &server) == Outcome::Accepted).is_some());
    bed.apply_yaml(ALLOW_WEB).unwrap();
    let guarded_by_policy = wait_until(Duration::from_secs(20), || from_pod(&outsider, &server) == Outcome::Dropped);
    assert!(guarded_by_policy.is_some(), "the ALLOW-selected pod still takes plaintext:\n{}", agents[0].log_tail(30));
    assert_eq!(from_node(&bed, 2, None, &server), Outcome::Dropped, "hostNetwork process of node 2, policy-guarded pod");
    call_ok(&near, ClientRequest::http("http://echo.locked/near"), &agents);
    call_ok(&far, ClientRequest::http("http://echo.locked/far"), &agents);
    // The late pod (app: late) is not selected: PERMISSIVE still takes plaintext there.
    assert_eq!(from_pod(&outsider, &late), Outcome::Accepted, "an unselected pod of a PERMISSIVE namespace");
}
