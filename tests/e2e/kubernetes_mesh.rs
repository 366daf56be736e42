//! The mesh in Kubernetes mode on the multi-node bed: `ambit-agent signer` (a process,
//! holding a CA made by `ambit-agent ca init`) signs workload certificates through the
//! in-test API server's CertificateSigningRequest API and publishes the trust bundle
//! and the mesh directory (`MeshNode` objects); `ambit-agent run --mesh` on every node,
//! each authenticated by a token bound to its own node, as a DaemonSet pod's is. Real
//! eBPF, real agents, a capture of the cluster network. Needs root; fails (never skips)
//! without it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use ambit_e2e::{AgentMode, AgentOptions, BedApiServer, BedOptions, ClientRequest, MeshCa, Pod, PodSpec, RunningAgent, TestBed, Wire};
use ambit_fake_apiserver::{Resource, User};
use support::mesh::{every_identity, held_identities, spiffe};
use support::poll;

const ECHO_HTTP_PORT: u16 = ambit_e2e::echo_server::HTTP_PORT;
const HBONE_PORT: u16 = ambit_e2e::capture::HBONE_PORT;
/// The agents' (and the signer's) namespace.
const AGENT_NS: &str = "ambit-system";

const SERVICES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ambit-system}
---
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
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: tcp, port: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: late, namespace: server}
spec:
  selector: {app: late}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
"#;


/// `ambit-agent signer` in node 1's namespace; killed when dropped.
struct SignerProcess {
    child: Child,
    log: PathBuf,
}

impl SignerProcess {
    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for SignerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bed as a cluster with the mesh on: the API server, the signer, one agent per node.
/// Field order is drop order: agents first, then the signer, then the API server.
struct MeshCluster {
    agents: Vec<RunningAgent>,
    signer: SignerProcess,
    api: BedApiServer,
    bed: TestBed,
}

fn kubeconfig(api: &BedApiServer, dir: &Path, token: &str) -> PathBuf {
    let path = dir.join(format!("kubeconfig-{token}"));
    api.server().write_kubeconfig_with_token(&path, token).unwrap();
    path
}

/// Two nodes; `setup` adds pods before the agents start.
fn mesh_cluster(setup: impl FnOnce(&TestBed)) -> MeshCluster {
    let bed = TestBed::with_options(BedOptions {
        pod_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_ambit-pod"))),
        nodes: 2,
        ..Default::default()
    })
    .expect("creating a multi-node test bed (needs root, cgroup v2 and iproute2)");
    bed.apply_yaml(SERVICES).unwrap();
    setup(&bed);
    let api = BedApiServer::start(&bed).unwrap();
    let dir = bed.scratch_dir().to_path_buf();
    let ca = MeshCa::create(&dir.join("mesh-ca")).unwrap();

    // The signer's own account; each agent's token is bound to its pod on its node.
    api.server().add_token("signer", User::service_account(AGENT_NS, "ambit-signer"));
    let mut agent_configs = Vec::new();
    for node in bed.nodes() {
        let token = format!("agent-{}", node.name());
        let user = User::service_account(AGENT_NS, "ambit-agent").bound_to_pod(&format!("ambit-agent-{}", node.index()), node.name());
        api.server().add_token(&token, user);
        agent_configs.push(kubeconfig(&api, &dir, &token));
    }
    let signer = start_signer(&bed, &api, &ca, &kubeconfig(&api, &dir, "signer"));
    let options = |i: usize| AgentOptions {
        mode: AgentMode::KubernetesKubeconfig { kubeconfig: agent_configs[i - 1].clone() },
        access_log: true,
        extra_args: vec!["--mesh".into(), "--trust-bundle-wait".into(), "20s".into()],
        ..AgentOptions::default()
    };
    let agents = RunningAgent::start_each(&bed, options).unwrap_or_else(|e| panic!("{e:#}\nsigner:\n{}", signer.log_tail(30)));
    MeshCluster { agents, signer, api, bed }
}

/// Starts the signer and waits until it has published the trust bundle.
fn start_signer(bed: &TestBed, api: &BedApiServer, ca: &MeshCa, kubeconfig: &Path) -> SignerProcess {
    let log = bed.scratch_dir().join("signer.log");
    let file = std::fs::File::create(&log).unwrap();
    let agent = ambit_e2e::binaries::ambit_agent().unwrap();
    let mut cmd = bed.node_command_on(1, agent).unwrap();
    cmd.args(["signer", "--log-json", "--kubeconfig"]).arg(kubeconfig).arg("--ca-dir").arg(ca.dir());
    cmd.args(["--trust-domain", ambit_e2e::mesh_ca::TRUST_DOMAIN, "--agent-namespace", AGENT_NS, "--directory-debounce", "50ms"]);
    cmd.stdin(std::process::Stdio::null()).stdout(file.try_clone().unwrap()).stderr(file);
    let signer = SignerProcess { child: cmd.spawn().unwrap(), log };
    let published = poll(Duration::from_secs(20), || api.server().get(Resource::ConfigMaps, AGENT_NS, "ambit-trust-bundle"));
    assert!(published.is_some(), "the signer published no trust bundle:\n{}", signer.log_tail(30));
    signer
}

impl MeshCluster {
    /// Everything the test needs to see when a check fails.
    fn logs(&self) -> String {
        let agents: Vec<String> = self.agents.iter().map(|a| format!("node {}:\n{}", a.node(), a.log_tail(30))).collect();
        format!("{}\nsigner:\n{}", agents.join("\n"), self.signer.log_tail(30))
    }

    /// One request from `pod` that must get 200.
    fn call(&self, pod: &Pod, request: ClientRequest) -> ambit_e2e::RequestResult {
        let request = request.timeout(Duration::from_secs(5));
        let out = pod.run_client(&request).unwrap();
        let r = out.only().clone();
        if out.error.is_some() || r.error.is_some() || r.status != Some(200) {
            panic!("{request:?} from {}: {out:#?}\n{}", pod.name, self.logs());
        }
        r
    }

    fn wait_for_certificates(&self, node: usize, wanted: &[String]) {
        let agent = &self.agents[node - 1];
        let held = poll(Duration::from_secs(20), || {
            let held = held_identities(agent);
            wanted.iter().all(|w| held.contains(w)).then_some(held)
        });
        assert!(held.is_some(), "node {node} holds no certificate for {wanted:?}:\n{}", self.logs());
    }
}



/// The agent's mesh table entry for `ip`: (node HBONE address, identity).
fn mesh_entry(agent: &RunningAgent, ip: &str) -> Option<(String, String)> {
    let dump = agent.config_dump().ok()?;
    let mesh = dump["config"]["mesh"].as_array()?.clone();
    let entry = mesh.into_iter().find(|e| e["pod"] == ip)?;
    Some((entry["node"].as_str()?.to_string(), entry["identity"].as_str()?.to_string()))
}

fn listed_workload(agent: &RunningAgent, pod: &Pod) -> bool {
    let dump = agent.config_dump().unwrap();
    dump["config"]["workloads"]
        .as_array()
        .is_some_and(|ws| ws.iter().any(|w| w["namespace"] == pod.namespace.as_str() && w["name"] == pod.name.as_str()))
}

#[test]
fn cross_node_calls_use_certificates_from_the_signer_and_the_directory() {
    let mut echo = None;
    let cluster = mesh_cluster(|bed| {
        let spec = PodSpec::new("server", "echo-0").label("app", "echo").service_account("echo").on_node(2);
        echo = Some(bed.add_pod(spec).unwrap());
    });
    let echo = echo.unwrap();
    let node2 = cluster.bed.node(2).unwrap().clone();
    let client = cluster.bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).service_account("web").on_node(1)).unwrap();
    cluster.agents[0].wait_enrolled("mesh-a", "client-1", Duration::from_secs(10)).unwrap();
    cluster.wait_for_certificates(1, &[spiffe("mesh-a", "web")]);
    cluster.wait_for_certificates(2, &[spiffe("server", "echo")]);

    // Each node obtained only the identities of its own pods.
    assert!(!every_identity(&cluster.agents[0]).contains(&spiffe("server", "echo")), "node 1 holds node 2's identity\n{}", cluster.logs());
    assert!(!every_identity(&cluster.agents[1]).contains(&spiffe("mesh-a", "web")), "node 2 holds node 1's identity\n{}", cluster.logs());

    // Node 1 watches only its own pods, and knows node 2's pod from the directory.
    assert!(!listed_workload(&cluster.agents[0], &echo), "node 1's agent watched a pod of node 2");
    let expected = (format!("{}:{HBONE_PORT}", node2.ipv4()), spiffe("server", "echo"));
    let entry = poll(Duration::from_secs(10), || mesh_entry(&cluster.agents[0], &echo.ipv4.to_string()));
    assert_eq!(entry, Some(expected), "node 1's mesh table\n{}", cluster.logs());

    // The call: the right answer, nothing of it in plaintext between the nodes.
    let marker = format!("kube-mesh-{}", std::process::id());
    let capture = cluster.bed.capture(Duration::from_secs(30)).unwrap();
    let r = cluster.call(&client, ClientRequest::http(format!("http://echo.server/{marker}")));
    let captured = capture.finish().unwrap();
    assert_eq!(r.echo_pod(), Some("echo-0"), "{r:?}");
    if let Err(e) = captured.check_wire(marker.as_bytes(), ECHO_HTTP_PORT, Wire::Hbone) {
        panic!("{e:#}");
    }
    assert!(captured.tcp_payload_bytes(HBONE_PORT) > 0, "nothing crossed on the HBONE port");

    // Node 2 recorded the caller's verified SPIFFE ID (logged when a stream ends: an
    // opaque TCP call's ends with its connection, a pooled HTTP one's later).
    let tcp_marker = format!("kube-tcp-{}", std::process::id());
    let r = cluster.call(&client, ClientRequest::tcp("echo.server:9090", tcp_marker.clone()));
    assert_eq!(r.body_text, tcp_marker, "{r:?}");
    let inbound = poll(Duration::from_secs(10), || {
        cluster.agents[1].access_log().into_iter().find(|e| {
            e["kind"] == "hbone_inbound"
                && e["source_identity"] == spiffe("mesh-a", "web").as_str()
                && e["backend"].as_str().is_some_and(|b| b.ends_with(":9090"))
        })
    });
    assert!(inbound.is_some(), "node 2 logged no inbound stream from spiffe://…/sa/web:\n{}", cluster.logs());

    // Each request was answered once: no write of a request the signer had finished.
    let signer_log = std::fs::read_to_string(&cluster.signer.log).unwrap();
    assert_eq!(signer_log.matches("\"message\":\"issued\"").count(), 2, "{signer_log}");
    assert!(!signer_log.contains("may not modify existing certificate"), "{signer_log}");

    // The mesh table entry came from node 2's MeshNode: without the signer to publish it
    // again, deleting that object removes the entry.
    let MeshCluster { agents, mut signer, api, bed } = cluster;
    let _ = signer.child.kill();
    let _ = signer.child.wait();
    assert!(api.server().delete(Resource::MeshNodes, "", node2.name()).is_some(), "no MeshNode for {}", node2.name());
    let gone = poll(Duration::from_secs(10), || mesh_entry(&agents[0], &echo.ipv4.to_string()).is_none().then_some(()));
    assert!(gone.is_some(), "node 1 kept node 2's pod without its MeshNode:\n{}", agents[0].log_tail(30));
    drop((agents, api, bed));
}

#[test]
fn a_pod_started_on_another_node_later_is_reached_through_the_mesh() {
    let cluster = mesh_cluster(|_| {});
    let client = cluster.bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).service_account("web").on_node(1)).unwrap();
    cluster.agents[0].wait_enrolled("mesh-a", "client-1", Duration::from_secs(10)).unwrap();
    cluster.wait_for_certificates(1, &[spiffe("mesh-a", "web")]);

    // Directory churn: a new pod on node 2, after everything started.
    let started = Instant::now();
    let late = cluster.bed.add_pod(PodSpec::new("server", "late-0").label("app", "late").service_account("late").on_node(2)).unwrap();
    let reached = poll(Duration::from_secs(30), || {
        let tunnelled = mesh_entry(&cluster.agents[0], &late.ipv4.to_string()).is_some();
        let out = client.run_client(&ClientRequest::http("http://late.server/churn").timeout(Duration::from_secs(2))).ok()?;
        let ok = out.results.first().is_some_and(|r| r.status == Some(200) && r.echo_pod() == Some("late-0"));
        (tunnelled && ok).then_some(started.elapsed())
    });
    let took = reached.unwrap_or_else(|| panic!("late-0 was not reached through the mesh within 30 s:\n{}", cluster.logs()));
    eprintln!("a new pod on node 2 was reached through the mesh after {took:?}");
    // Through the tunnel, with the callee's identity, as node 1 logged it.
    let r = cluster.call(&client, ClientRequest::http("http://late.server/churned"));
    assert_eq!(r.echo_pod(), Some("late-0"), "{r:?}");
    let line = poll(Duration::from_secs(5), || {
        cluster.agents[0].access_log().into_iter().find(|e| e["kind"] == "http" && e["path"] == "/churned")
    })
    .unwrap_or_else(|| panic!("node 1 logged no /churned:\n{}", cluster.logs()));
    assert_eq!(line["tunnel"], "hbone", "{line}");
    assert_eq!(line["destination_identity"], spiffe("server", "late").as_str(), "{line}");
    assert!(held_identities(&cluster.agents[1]).contains(&spiffe("server", "late")), "node 2 holds no certificate for late\n{}", cluster.logs());
}

#[test]
fn a_changed_trust_bundle_reaches_running_agents() {
    let cluster = mesh_cluster(|_| {});
    let client = cluster.bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).service_account("web").on_node(1)).unwrap();
    cluster.wait_for_certificates(1, &[spiffe("mesh-a", "web")]);
    let before = serial(&cluster.agents[0], &spiffe("mesh-a", "web")).unwrap();

    // A CA rotation's first step: the bundle gains the next root.
    let next = MeshCa::create(&cluster.bed.scratch_dir().join("next-ca")).unwrap();
    let mut map = cluster.api.server().get(Resource::ConfigMaps, AGENT_NS, "ambit-trust-bundle").unwrap();
    let current = map["data"]["ca.pem"].as_str().unwrap().to_string();
    map["data"]["ca.pem"] = format!("{current}{}", next.certificate_pem().unwrap()).into();
    cluster.api.server().apply(map).unwrap();

    // The store renews its certificates under the new bundle, and calls still work.
    let renewed = poll(Duration::from_secs(20), || serial(&cluster.agents[0], &spiffe("mesh-a", "web")).filter(|s| *s != before));
    assert!(renewed.is_some(), "node 1 did not renew under the new bundle:\n{}", cluster.logs());
    assert!(cluster.agents[0].log().contains("the trust bundle changed"), "{}", cluster.logs());
    let echo = cluster.bed.add_pod(PodSpec::new("server", "late-0").label("app", "late").service_account("late").on_node(2)).unwrap();
    let reached = poll(Duration::from_secs(30), || {
        mesh_entry(&cluster.agents[0], &echo.ipv4.to_string())?;
        let out = client.run_client(&ClientRequest::http("http://late.server/after-rotation").timeout(Duration::from_secs(2))).ok()?;
        out.results.first().is_some_and(|r| r.status == Some(200)).then_some(())
    });
    assert!(reached.is_some(), "no call through the mesh after the bundle changed:\n{}", cluster.logs());
}

/// The serial of the valid certificate an agent holds for `identity`.
fn serial(agent: &RunningAgent, identity: &str) -> Option<String> {
    let dump = agent.config_dump().ok()?;
    let certs = dump["certificates"]["certificates"].as_array()?.clone();
    let cert = certs.into_iter().find(|c| c["identity"] == identity && c["state"] == "valid")?;
    cert["serial"].as_str().map(str::to_string)
}
