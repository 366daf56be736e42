//! Scenario 9: the control plane at mesh scale, simulated. The in-test API server
//! holds a large cluster ([`scale_cluster`]: `MeshNode`s for 5,000 nodes × 20 pods,
//! 20,000 Services with EndpointSlices); one agent (`ambit-agent run`, Kubernetes
//! mode, on a one-node bed) syncs it. Reported: the agent's RSS after the initial
//! sync, the time from its start to `/ready`, and how long a pod's churn takes to
//! reach it (p50/p99).
//!
//! Churn: a pod appears on a node that had none (its `MeshNode` is created), then goes
//! (deleted). Arrival is when the agent's applied configuration counts the new number
//! of `MeshNode`s (`ambit_config_resources{kind="MeshNode"}` on `/metrics`), i.e. after
//! the watch event, the debounce and a full translation.

use std::time::{Duration, Instant};

use ambit_e2e::{AgentMode, AgentOptions, BedApiServer, RunningAgent, TestBed};
use ambit_fake_apiserver::Resource;
use anyhow::{bail, Context, Result};

use super::report::{Better, Figure, Report};
use super::scale_cluster::{self, Size};
use super::Plan;

const SCENARIO: &str = "9 control plane at mesh scale (simulated)";

/// The cluster the issue names: 5,000 nodes, 100,000 pods, 20,000 Services.
pub const SIZE: Size = Size { nodes: 5_000, pods_per_node: 20, services: 20_000, namespaces: 100 };

/// How long one change may take to arrive before the scenario gives up.
const ARRIVAL_LIMIT: Duration = Duration::from_secs(30);

fn load_cluster(api: &BedApiServer, size: &Size) -> Result<()> {
    let server = api.server();
    let apply = |object: serde_json::Value| {
        server.apply(object).map_err(|e| anyhow::anyhow!("the in-test API server refused an object: {} {}", e.code, e.message))
    };
    for ns in scale_cluster::namespaces(size) {
        apply(ns)?;
    }
    for i in 0..size.services {
        for object in scale_cluster::service(size, i) {
            apply(object)?;
        }
    }
    for k in 0..size.nodes {
        apply(scale_cluster::mesh_node(size, k))?;
    }
    Ok(())
}

/// `ambit_config_resources{kind="MeshNode"}` as the agent last applied it.
fn mesh_nodes_applied(agent: &RunningAgent) -> Result<u64> {
    let (status, metrics) = agent.admin("GET", "/metrics")?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ambit_config_resources{") && l.contains("kind=\"MeshNode\""))
        .context("no ambit_config_resources{kind=\"MeshNode\"} on /metrics")?;
    Ok(line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).context("malformed gauge")? as u64)
}

/// Polls until the agent has applied `expected` MeshNodes; the time that took. A busy
/// agent may answer `/metrics` late or not at all: polling goes on until the limit.
fn wait_applied(agent: &RunningAgent, expected: u64, since: Instant) -> Result<Duration> {
    loop {
        let last = match mesh_nodes_applied(agent) {
            Ok(n) if n == expected => return Ok(since.elapsed()),
            Ok(n) => format!("{n} applied"),
            Err(e) => format!("{e:#}"),
        };
        if since.elapsed() > ARRIVAL_LIMIT {
            bail!("the agent did not apply {expected} MeshNodes within {ARRIVAL_LIMIT:?} (last: {last}); log:\n{}", agent.log_tail(20));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `changes` churn events (a node's first pod appears, then goes); their arrival times.
fn churn(api: &BedApiServer, agent: &RunningAgent, size: &Size, changes: usize) -> Result<Vec<f64>> {
    let base = size.nodes as u64;
    let mut times = Vec::with_capacity(changes);
    for c in 0..changes {
        let (name, object) = scale_cluster::churn_node(size, c / 2);
        let t0 = Instant::now();
        let expected = if c % 2 == 0 {
            api.server().apply(object).map_err(|e| anyhow::anyhow!("creating MeshNode {name}: {}", e.message))?;
            base + 1
        } else {
            api.server().delete(Resource::MeshNodes, "", &name).with_context(|| format!("MeshNode {name} was not there"))?;
            base
        };
        times.push(wait_applied(agent, expected, t0)?.as_secs_f64() * 1e3);
    }
    Ok(times)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub fn run(plan: &Plan, report: &mut Report) -> Result<()> {
    let size = SIZE;
    let bed = TestBed::new()?;
    let api = BedApiServer::start(&bed)?;
    let loading = Instant::now();
    load_cluster(&api, &size)?;
    println!("    {} objects loaded into the in-test API server in {:.1} s", size.namespaces + 2 * size.services + size.nodes, loading.elapsed().as_secs_f64());
    let options = AgentOptions { mode: AgentMode::Kubernetes { api_server: api.url() }, log_level: "warn".into(), ..AgentOptions::default() };
    let started = Instant::now();
    let agent = RunningAgent::start(&bed, &options).context("starting the agent against the simulated cluster")?;
    let sync = started.elapsed();
    println!("    the agent is ready {:.2} s after start", sync.as_secs_f64());
    let applied = wait_applied(&agent, size.nodes as u64, started).context("waiting for the initial sync")?;
    let pin_dir = agent.pin_dir().display().to_string();
    let pid = super::procs::find_pid(&["ambit-agent", &pin_dir]).context("cannot find the agent's pid")?;
    let rss = super::procs::rss_bytes(pid)? as f64 / (1 << 20) as f64;
    println!("    RSS {rss:.1} MiB; timing {} changes", plan.scale_changes);
    let mut times = churn(&api, &agent, &size, plan.scale_changes).context("timing churn")?;
    times.sort_by(f64::total_cmp);
    let scale = format!(
        "{} nodes × {} pods = {} pods (MeshNodes), {} Services + EndpointSlices, {} namespaces",
        size.nodes,
        size.pods_per_node,
        size.pods(),
        size.services,
        size.namespaces
    );
    let mut mem = Figure::new(SCENARIO, "agent RSS after the initial sync", "MiB", Better::Lower);
    mem.ambit.push(rss);
    report.push(mem.target("≤ 200 MiB", |_, m| m <= 200.0).note(scale));
    let mut first = Figure::new(SCENARIO, "initial sync (start → /ready)", "s", Better::Lower);
    first.ambit.push(sync.as_secs_f64());
    report.push(first.note(format!(
        "ambit-agent run against the in-test API server on a one-node bed (eBPF attached); every MeshNode counted in the applied configuration {:.2} s after start",
        applied.as_secs_f64()
    )));
    for (metric, q) in [("pod churn → agent, p50", 0.5), ("pod churn → agent, p99", 0.99)] {
        let mut f = Figure::new(SCENARIO, metric, "ms", Better::Lower);
        f.ambit.push(percentile(&times, q));
        let f = if q > 0.9 { f.target("≤ 1000 ms", |_, m| m <= 1000.0) } else { f };
        report.push(f.note(format!(
            "{} changes, one at a time: a pod appears on a node that had none (MeshNode created) or goes (deleted); \
             arrival when ambit_config_resources{{kind=\"MeshNode\"}} on /metrics shows it (watch, debounce, full translation)",
            times.len()
        )));
    }
    drop(agent);
    drop(api);
    drop(bed);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_of_sorted_samples() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 0.5), 100.0);
        assert_eq!(super::percentile(&v, 0.99), 198.0);
        assert!(super::percentile(&[], 0.5).is_nan());
    }
}
