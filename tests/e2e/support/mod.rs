//! Shared set-up for the end-to-end tests: a bed with a server namespace, enrolled and
//! non-enrolled client namespaces, and the agent.

#![allow(dead_code)]

pub mod mesh;

use std::time::{Duration, Instant};

use ambit_e2e::{AgentOptions, ClientRequest, Pod, PodSpec, RequestResult, RunningAgent, TestBed};
use anyhow::Result;

pub const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: server, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mesh-a, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mesh-b, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: server}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: echo
        ports: [{containerPort: 8080}, {containerPort: 9090}, {containerPort: 7070}]
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
  - {name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}
"#;

/// A bed of `nodes` nodes (pods placed with `PodSpec::on_node`).
pub fn multi_node_bed(nodes: usize) -> TestBed {
    TestBed::with_options(ambit_e2e::BedOptions {
        pod_bin: Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_ambit-pod"))),
        nodes,
        ..Default::default()
    })
    .expect("creating a multi-node test bed (needs root, cgroup v2 and iproute2)")
}

/// One request from `pod` that must get 200 (5 s timeout); otherwise the test fails
/// with every agent's log tail.
pub fn call_ok(pod: &Pod, request: ClientRequest, agents: &[RunningAgent]) -> RequestResult {
    let request = request.timeout(Duration::from_secs(5));
    let out = pod.run_client(&request).unwrap();
    let r = out.only().clone();
    if out.error.is_some() || r.error.is_some() || r.status != Some(200) {
        let logs: Vec<String> = agents.iter().map(|a| format!("node {}:\n{}", a.node(), a.log_tail(30))).collect();
        panic!("{request:?} from {}: {out:#?}\n{}", pod.name, logs.join("\n"));
    }
    r
}

pub struct World {
    // Field order: the agent (and its eBPF pins) goes before the bed.
    pub agent: RunningAgent,
    pub bed: TestBed,
}

impl World {
    pub fn start(options: AgentOptions) -> Result<World> {
        Self::start_with(WORLD, options)
    }

    /// A bed with `yaml` applied and an agent serving it.
    pub fn start_with(yaml: &str, options: AgentOptions) -> Result<World> {
        let bed = TestBed::new()?;
        bed.apply_yaml(yaml)?;
        let agent = RunningAgent::start(&bed, &options)?;
        Ok(World { agent, bed })
    }

    /// Adds a client pod and, when its namespace is in the mesh, waits until the agent
    /// has enrolled it (as a CNI plugin would hold the pod until then).
    pub fn client(&self, namespace: &str, name: &str) -> Result<Pod> {
        self.add(PodSpec::new(namespace, name).serve(false))
    }

    pub fn add(&self, spec: PodSpec) -> Result<Pod> {
        let pod = self.bed.add_pod(spec)?;
        if pod.namespace != "plain" {
            self.agent.wait_enrolled(&pod.namespace, &pod.name, Duration::from_secs(5))?;
        }
        Ok(pod)
    }

    pub fn vip(&self) -> String {
        self.bed.service_ip("server", "echo").expect("echo has a cluster IP").to_string()
    }
}

pub fn access_log_agent() -> AgentOptions {
    AgentOptions { access_log: true, ..AgentOptions::default() }
}

/// Polls `f` every 20 ms until it returns true or `limit` passes; returns the time it took.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Polls `f` every 20 ms until it returns a value, for at most `limit`.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(value) = f() {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// One GET to `url` from `pod` with a short timeout: the HTTP status or the error text.
pub fn get(pod: &Pod, url: &str) -> Result<u16, String> {
    let out = pod
        .run_client(&ClientRequest::http(url).timeout(Duration::from_millis(800)))
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

/// Which Deployment (`echo-v1`/`echo-v2`) answered: from the banner port's greeting
/// ("220 echo-vN-… ready"), the echo's pod name, or its `x-echo-pod` header.
pub fn version(r: &RequestResult) -> Option<&'static str> {
    let pod = r
        .banner
        .as_deref()
        .and_then(|b| b.strip_prefix("220 "))
        .or_else(|| r.echo_pod())
        .or_else(|| r.header("x-echo-pod"))?;
    if pod.starts_with("echo-v1-") {
        Some("v1")
    } else if pod.starts_with("echo-v2-") {
        Some("v2")
    } else {
        None
    }
}

/// Waits (up to 10 s) until 10 requests in a row all satisfy `f` (plain load balancing
/// over two versions cannot pass this by chance, so it shows a route is applied). Each
/// request may take 2 s, so an attempt made before the change (say, a banner read from
/// a port that sends none) leaves time for more attempts.
pub fn settled(world: &World, pod: &Pod, request: ClientRequest, mut f: impl FnMut(&RequestResult) -> bool) {
    let request = request.count(10).timeout(Duration::from_secs(2));
    let ok = wait_until(Duration::from_secs(10), || {
        pod.run_client(&request).is_ok_and(|out| out.results.len() == 10 && out.results.iter().all(&mut f))
    });
    if ok.is_none() {
        let last = pod.run_client(&request);
        panic!("{request:?}: not settled after 10 s; last: {last:?}\nagent log:\n{}", world.agent.log_tail(30));
    }
}

/// A route's status in `/config_dump`.
pub fn route_status<'a>(dump: &'a serde_json::Value, kind: &str, namespace: &str, name: &str) -> Option<&'a serde_json::Value> {
    dump["routeStatus"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["namespace"] == namespace && r["name"] == name)
}

/// The first parent's condition `type_` of a route: (status, reason).
pub fn condition(dump: &serde_json::Value, kind: &str, namespace: &str, name: &str, type_: &str) -> Option<(String, String)> {
    let status = route_status(dump, kind, namespace, name)?;
    let c = status["parents"][0]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
}
