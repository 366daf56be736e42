//! Shared set-up for the end-to-end tests: a bed with a server namespace, enrolled and
//! non-enrolled client namespaces, and the agent.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ambit_e2e::{AgentOptions, ClientRequest, Pod, PodSpec, RunningAgent, TestBed};
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

pub struct World {
    // Field order: the agent (and its eBPF pins) goes before the bed.
    pub agent: RunningAgent,
    pub bed: TestBed,
}

impl World {
    pub fn start(options: AgentOptions) -> Result<World> {
        let bed = TestBed::new()?;
        bed.apply_yaml(WORLD)?;
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
