//! The cross-node benchmark bed: two nodes, a client pod on node 1, an echo pod on
//! node 2 behind a Service, one agent per node, started with the mesh off
//! (plaintext between nodes) or on (`--ca-dir`: HBONE, mutual TLS).
//!
//! Each simulated node gets its own core, as two machines would: node 1 (the client
//! pod and its agent) on CPU 0, node 2 (the echo pod and its agent) on CPU 1. The same
//! pinning serves both wires, so their ratio compares like with like.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ambit_e2e::{AgentOptions, BedOptions, MeshCa, Pod, PodSpec, RunningAgent, TestBed};
use anyhow::{Context, Result};

use super::procs;

const NAMESPACE: &str = "bench-x";

const BED_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: bench-x, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: bench-x}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: tcp, port: 9000, targetPort: 9090, appProtocol: tcp}
"#;

/// How node 1's proxy was replaced under load, timed from the start of the hand-over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Handover {
    /// Until the successor served (Ambit: its admin API ready; ztunnel: its listeners
    /// open in the client pod).
    pub successor_ready: Duration,
    /// Until the old proxy had exited after its SIGTERM.
    pub old_gone: Duration,
}

/// The core of simulated node `node` (1 or 2).
fn node_cpu(node: usize) -> usize {
    node - 1
}

/// How the two node proxies talk to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// The mesh off: the caller's node proxy connects to the remote pod in plaintext.
    Plaintext,
    /// The mesh on: HBONE (HTTP/2 CONNECT over mutual TLS 1.3) between the node proxies.
    Mtls,
}

/// The two-node bed and its agents.
pub struct CrossWorld {
    /// Declared first: the agents stop (and detach) before the bed goes.
    agents: Vec<RunningAgent>,
    /// The agents' pids (node 1 first), for CPU time from /proc.
    pub agent_pids: Vec<i32>,
    pub wire: Option<Wire>,
    pub client: Pod,
    ca: MeshCa,
    pub bed: TestBed,
    pub load_bin: PathBuf,
}

impl CrossWorld {
    /// Brings up the two-node bed with its pods and a mesh CA; no agent yet.
    pub fn start(load_bin: PathBuf) -> Result<CrossWorld> {
        let bed = TestBed::with_options(BedOptions { nodes: 2, ..Default::default() })?;
        let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca"))?;
        bed.apply_yaml(BED_YAML)?;
        let server = bed.add_pod(PodSpec::new(NAMESPACE, "echo-0").label("app", "echo").service_account("echo").on_node(2))?;
        let client = bed.add_pod(PodSpec::new(NAMESPACE, "client-0").label("app", "client").service_account("client").on_node(1))?;
        for (pod, node) in [(&client, 1), (&server, 2)] {
            for pid in procs::cgroup_pids(&pod.cgroup) {
                procs::pin(pid, node_cpu(node))?;
            }
        }
        Ok(CrossWorld { agents: vec![], agent_pids: vec![], wire: None, client, ca, bed, load_bin })
    }

    fn agent_options(&self, wire: Wire) -> AgentOptions {
        // Each agent has one core: one data-path worker.
        let mut extra_args = vec!["--workers".to_string(), "1".to_string()];
        if wire == Wire::Mtls {
            extra_args.extend(self.ca.agent_args());
        }
        AgentOptions { log_level: "warn".into(), extra_args, ..AgentOptions::default() }
    }

    /// (Re)starts both agents with `wire`; waits until node 1 serves the client, pins them.
    pub fn start_agents(&mut self, wire: Wire) -> Result<()> {
        self.stop_agents();
        let options = self.agent_options(wire);
        let agents = RunningAgent::start_all(&self.bed, &options)?;
        agents[0].wait_enrolled(NAMESPACE, &self.client.name, Duration::from_secs(10))?;
        for (i, agent) in agents.iter().enumerate() {
            // Node 1's pin directory is a prefix of node 2's: match the whole argument.
            let pin_dir = format!(" {} ", agent.pin_dir().display());
            let pid = procs::find_pid(&["ambit-agent", &pin_dir]).context("cannot find an agent's pid")?;
            procs::pin(pid, node_cpu(i + 1))?;
            procs::raise_nofile(pid)?;
            self.agent_pids.push(pid);
        }
        self.agents = agents;
        self.wire = Some(wire);
        Ok(())
    }

    /// Stops both agents (their programs detached): the bed without Ambit.
    pub fn stop_agents(&mut self) {
        self.agents.clear();
        self.agent_pids.clear();
        self.wire = None;
    }

    /// A rollout on node 1 (README "Upgrades without an outage"): a successor agent
    /// starts beside node 1's agent and becomes ready, then the old one gets SIGTERM;
    /// returns when each step ended.
    pub fn hand_over_client_agent(&mut self) -> Result<Handover> {
        let began = Instant::now();
        let wire = self.wire.context("no agents running")?;
        let options = self.agent_options(wire);
        let old = self.agents.first_mut().context("no agent on node 1")?;
        let successor = old.start_successor(&self.bed, &options)?;
        let successor_ready = began.elapsed();
        let pid = successor.pid().context("the successor has no pid")? as i32;
        procs::pin(pid, node_cpu(1))?;
        procs::raise_nofile(pid)?;
        let status = old.hand_over_to(successor)?;
        let old_gone = began.elapsed();
        anyhow::ensure!(status.success(), "node 1's old agent exited with {status}");
        self.agent_pids[0] = pid;
        Ok(Handover { successor_ready, old_gone })
    }

    /// Both agents' CPU time (utime + stime), in seconds.
    pub fn agents_cpu_seconds(&self) -> Result<f64> {
        self.agent_pids.iter().map(|&p| procs::cpu_seconds(p)).sum()
    }

    /// `ambit_hbone_client_handshakes_total` of node 1's agent (the caller's side).
    pub fn client_handshakes(&self) -> Result<u64> {
        let agent = self.agents.first().context("no agent running")?;
        let (status, metrics) = agent.admin("GET", "/metrics")?;
        anyhow::ensure!(status == 200, "node 1 /metrics answered {status}");
        counter(&metrics, "ambit_hbone_client_handshakes_total").context("node 1's /metrics has no ambit_hbone_client_handshakes_total")
    }

    /// The echo Service's address on `port` (80: HTTP, 9000: opaque TCP).
    pub fn service(&self, port: u16) -> Result<SocketAddr> {
        let ip = self.bed.service_ip(NAMESPACE, "echo").context("Service echo has no cluster IP")?;
        Ok(SocketAddr::new(ip.into(), port))
    }

    /// The core of the client's node: where its load generators run.
    pub fn client_cpu(&self) -> usize {
        node_cpu(1)
    }

    pub fn load_bin(&self) -> &Path {
        &self.load_bin
    }
}

/// The sum of a counter's samples in a Prometheus text exposition (None when absent).
pub fn counter(metrics: &str, name: &str) -> Option<u64> {
    let samples: Vec<f64> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum::<f64>() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_a_counter_over_its_labels() {
        let text = "# HELP x_total t\nx_total{a=\"1\"} 3\nx_total{a=\"2\"} 4\nx_totally 9\nx_total 1\n";
        assert_eq!(super::counter(text, "x_total"), Some(8));
        assert_eq!(super::counter(text, "y_total"), None);
    }
}
