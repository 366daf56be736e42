//! What the peer scenarios measure besides their figures, to explain them: how each
//! system's proxies used the CPU over a run, node by node (from /proc, see
//! [`procs::cpu_use`]), and how a restart went. [`super::why`] turns these into the
//! report's explanations; report.json keeps the medians (`peers.usage`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

pub use super::super::cross_world::Handover;
use super::super::procs::{CpuUse, ThreadedSample};
use super::super::report::median;
use super::table::System;

/// How a system's proxies used the CPU over one run: one sample difference per
/// proxy process, node 1's first (HAProxy has only node 1's).
#[derive(Clone, Debug)]
pub struct ProxyUse {
    /// Requests the run completed.
    pub requests: u64,
    pub nodes: Vec<CpuUse>,
}

/// One node's proxy over one run, per request: the quantities the explanations use.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeStats {
    /// utime + stime per request, µs.
    pub cpu_us: f64,
    pub user_us: f64,
    pub kernel_us: f64,
    /// Times the proxy's threads went to sleep and were woken again, per request.
    pub wakeups: f64,
    /// utime + stime per wake-up, µs.
    pub cpu_per_wakeup_us: f64,
    /// Mean time a thread waited for a CPU per wake-up (schedstat run_delay), µs.
    pub wait_per_wakeup_us: f64,
}

impl NodeStats {
    fn of(u: &CpuUse, requests: u64) -> NodeStats {
        let per_request = |x: f64| x / requests.max(1) as f64 * 1e6;
        let switches = u.voluntary_switches.max(1) as f64;
        let cpu = u.user_s + u.system_s;
        NodeStats {
            cpu_us: per_request(cpu),
            user_us: per_request(u.user_s),
            kernel_us: per_request(u.system_s),
            wakeups: u.voluntary_switches as f64 / requests.max(1) as f64,
            cpu_per_wakeup_us: cpu / switches * 1e6,
            wait_per_wakeup_us: u.run_delay_s / switches * 1e6,
        }
    }

    /// Each field the median of `runs`' (NaN when there are none).
    fn median_of(runs: &[NodeStats]) -> NodeStats {
        let m = |f: fn(&NodeStats) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN);
        NodeStats {
            cpu_us: m(|s| s.cpu_us),
            user_us: m(|s| s.user_us),
            kernel_us: m(|s| s.kernel_us),
            wakeups: m(|s| s.wakeups),
            cpu_per_wakeup_us: m(|s| s.cpu_per_wakeup_us),
            wait_per_wakeup_us: m(|s| s.wait_per_wakeup_us),
        }
    }

    fn to_json(self) -> Value {
        json!({
            "cpu_us_per_request": self.cpu_us,
            "user_us_per_request": self.user_us,
            "kernel_us_per_request": self.kernel_us,
            "wakeups_per_request": self.wakeups,
            "cpu_us_per_wakeup": self.cpu_per_wakeup_us,
            "run_queue_wait_us_per_wakeup": self.wait_per_wakeup_us,
        })
    }
}

/// Samples `pids` (node 1's proxy first) before a run; [`Sampler::finish`] after it.
pub struct Sampler {
    pids: Vec<i32>,
    before: Vec<ThreadedSample>,
}

impl Sampler {
    pub fn start(pids: &[i32]) -> anyhow::Result<Sampler> {
        let before = pids.iter().map(|&p| ThreadedSample::take(p)).collect::<anyhow::Result<_>>()?;
        Ok(Sampler { pids: pids.to_vec(), before })
    }

    /// The use since [`Sampler::start`], for a run of `requests`.
    pub fn finish(self, requests: u64) -> anyhow::Result<ProxyUse> {
        let nodes = self.pids.iter().zip(&self.before).map(|(&p, b)| Ok(ThreadedSample::take(p)?.since(b))).collect::<anyhow::Result<_>>()?;
        Ok(ProxyUse { requests, nodes })
    }
}

impl ProxyUse {
    /// utime + stime of every node's proxy, seconds (the figures' CPU time).
    pub fn cpu_seconds(&self) -> f64 {
        self.nodes.iter().map(|u| u.user_s + u.system_s).sum()
    }
}

/// One restart-under-load run.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartRun {
    pub handover: Handover,
    /// When the hand-over began, seconds after the load generator was started.
    pub began_s: f64,
    /// Failed requests (None: the load generator did not say).
    pub errors: Option<u64>,
    /// The longest gap between successes per kind of traffic (keepalive, new_conn), ms.
    pub gaps_ms: Vec<(String, f64)>,
    /// When the first failures happened, seconds into the load (the load generator's
    /// samples).
    pub error_at_s: Vec<f64>,
}

impl RestartRun {
    fn to_json(&self) -> Value {
        json!({
            "successor_ready_ms": self.handover.successor_ready.as_secs_f64() * 1000.0,
            "old_gone_ms": self.handover.old_gone.as_secs_f64() * 1000.0,
            "began_s": self.began_s,
            "errors": self.errors,
            "longest_gap_ms": self.gaps_ms.iter().map(|(k, g)| (k.clone(), json!(g))).collect::<serde_json::Map<_, _>>(),
            "error_at_s": self.error_at_s,
        })
    }
}

/// Everything collected, per scenario and system.
#[derive(Debug, Default)]
pub struct Usage {
    runs: BTreeMap<(String, System), Vec<ProxyUse>>,
    pub restarts: BTreeMap<System, Vec<RestartRun>>,
}

impl Usage {
    pub fn record(&mut self, scenario: &str, system: System, u: ProxyUse) {
        self.runs.entry((scenario.to_string(), system)).or_default().push(u);
    }

    pub fn restart(&mut self, system: System, run: RestartRun) {
        self.restarts.entry(system).or_default().push(run);
    }

    /// Per node (node 1 first), the medians over `system`'s runs of `scenario`; empty
    /// when none was measured.
    pub fn nodes(&self, scenario: &str, system: System) -> Vec<NodeStats> {
        let Some(runs) = self.runs.get(&(scenario.to_string(), system)) else { return vec![] };
        let count = runs.iter().map(|r| r.nodes.len()).max().unwrap_or(0);
        (0..count)
            .map(|i| {
                let per_run: Vec<NodeStats> =
                    runs.iter().filter_map(|r| r.nodes.get(i).map(|u| NodeStats::of(u, r.requests))).collect();
                NodeStats::median_of(&per_run)
            })
            .collect()
    }

    /// For report.json: per scenario and system, each node's medians; every restart run.
    pub fn json(&self) -> Value {
        let mut scenarios = serde_json::Map::new();
        for (scenario, system) in self.runs.keys() {
            let nodes: Vec<Value> = self.nodes(scenario, *system).into_iter().map(NodeStats::to_json).collect();
            let entry = scenarios.entry(scenario.clone()).or_insert_with(|| json!({}));
            entry[system.key()] = json!(nodes);
        }
        let restarts: serde_json::Map<String, Value> = self
            .restarts
            .iter()
            .map(|(s, runs)| (s.key().to_string(), json!(runs.iter().map(RestartRun::to_json).collect::<Vec<_>>())))
            .collect();
        json!({"proxies_per_node": scenarios, "restarts": restarts})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(user_s: f64, system_s: f64, switches: u64, delay_s: f64) -> CpuUse {
        CpuUse { user_s, system_s, voluntary_switches: switches, run_s: user_s + system_s, run_delay_s: delay_s }
    }

    #[test]
    fn per_request_and_per_wakeup_figures_come_from_the_differences() {
        let s = NodeStats::of(&used(0.3, 0.1, 2_000, 0.02), 1_000);
        assert!((s.cpu_us - 400.0).abs() < 1e-9, "{s:?}");
        assert!((s.user_us - 300.0).abs() < 1e-9 && (s.kernel_us - 100.0).abs() < 1e-9, "{s:?}");
        assert!((s.wakeups - 2.0).abs() < 1e-12, "{s:?}");
        assert!((s.cpu_per_wakeup_us - 200.0).abs() < 1e-9, "{s:?}");
        assert!((s.wait_per_wakeup_us - 10.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn nodes_are_medians_over_runs_node_by_node() {
        let mut u = Usage::default();
        for (a, b) in [(0.1, 0.5), (0.3, 0.5), (0.2, 0.9)] {
            let nodes = vec![used(a, 0.0, 100, 0.0), used(b, 0.0, 100, 0.0)];
            u.record("s", System::Ztunnel, ProxyUse { requests: 1_000, nodes });
        }
        let n = u.nodes("s", System::Ztunnel);
        assert_eq!(n.len(), 2);
        assert!((n[0].cpu_us - 200.0).abs() < 1e-9 && (n[1].cpu_us - 500.0).abs() < 1e-9, "{n:?}");
        assert!(u.nodes("s", System::AmbitMtls).is_empty());
        assert!(u.nodes("other", System::Ztunnel).is_empty());
        let v = u.json();
        assert_eq!(v["proxies_per_node"]["s"]["ztunnel"].as_array().map(Vec::len), Some(2));
    }
}
