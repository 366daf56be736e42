//! The measured explanation beside each peer target: figures of the same run that
//! show where the time, the memory or the failures went, Ambit mTLS next to ztunnel,
//! node by node. Only what the run measured goes in; a system or node that was not
//! measured is left out rather than described.

use super::measure::{rate_scenario, MEMORY, RATES, RESTART, THROUGHPUT};
use super::table::{PeerFigure, System};
use super::usage::{NodeStats, RestartRun, Usage};
use super::super::report::median;

/// The two systems every target compares.
const COMPARED: [System; 2] = [System::AmbitMtls, System::Ztunnel];

/// Sets the `why` of every figure with a target (and of the 5k p99, for report.json).
pub fn attach(figures: &mut [PeerFigure], usage: &Usage) {
    let whys: Vec<Option<String>> = figures.iter().map(|f| explain(f, figures, usage)).collect();
    for (f, why) in figures.iter_mut().zip(whys) {
        if let Some(why) = why.filter(|w| !w.is_empty()) {
            f.why = why;
        }
    }
}

fn explain(f: &PeerFigure, all: &[PeerFigure], usage: &Usage) -> Option<String> {
    match (f.scenario.as_str(), f.metric.as_str()) {
        (THROUGHPUT, "proxies' CPU per request, both nodes") => Some(cpu(f, usage)),
        (s, "latency p99") if RATES.iter().any(|&r| rate_scenario(r) == s) => Some(latency(f, usage)),
        (MEMORY, "proxies' memory per idle connection") => Some(memory(all)),
        (RESTART, "failed requests") => Some(restart(usage)),
        _ => None,
    }
}

/// A quantity in µs, to a precision that reads.
fn us(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// A difference in µs, with its sign.
fn signed_us(x: f64) -> String {
    if x >= 0.0 {
        format!("+{}", us(x))
    } else {
        format!("−{}", us(-x))
    }
}

/// "a / b": one value per node, node 1 first.
fn per_node(nodes: &[NodeStats], pick: impl Fn(&NodeStats) -> String) -> String {
    nodes.iter().map(pick).collect::<Vec<_>>().join(" / ")
}

/// The systems of `COMPARED` that were measured, with their per-node medians.
fn measured(usage: &Usage, scenario: &str) -> Vec<(System, Vec<NodeStats>)> {
    COMPARED.iter().map(|&s| (s, usage.nodes(scenario, s))).filter(|(_, n)| !n.is_empty()).collect()
}

/// P1's CPU per request: user space and kernel, node by node, and how often the
/// proxies slept.
fn cpu(f: &PeerFigure, usage: &Usage) -> String {
    let parts: Vec<String> = measured(usage, THROUGHPUT)
        .into_iter()
        .map(|(s, n)| {
            format!(
                "{} {} µs user + {} µs kernel, {} wake-ups",
                s.label(),
                per_node(&n, |x| us(x.user_us)),
                per_node(&n, |x| us(x.kernel_us)),
                per_node(&n, |x| format!("{:.2}", x.wakeups)),
            )
        })
        .collect();
    let mut out = String::new();
    if !parts.is_empty() {
        out = format!("per request, node 1 / node 2 proxy: {}", parts.join("; "));
    }
    if let (Some(plain), Some(mtls)) = (f.median(System::AmbitPlain), f.median(System::AmbitMtls)) {
        out.push_str(&format!(
            "; Ambit plaintext (mesh off, one hop) {} µs in all: Ambit mTLS − plaintext {} µs (the second hop and the tunnel)",
            us(plain),
            signed_us(mtls - plain)
        ));
    }
    out
}

/// A fixed rate's p99: the other systems' p99 in the same run, and per request how
/// often each proxy was woken, what a wake-up cost and how long it waited for a CPU.
fn latency(f: &PeerFigure, usage: &Usage) -> String {
    let p99 = |s: System| f.median(s).map(|v| format!("{} {} µs", s.label(), us(v)));
    let mut out = format!(
        "p99 {}",
        [System::Direct, System::AmbitPlain, System::AmbitMtls, System::Ztunnel].into_iter().filter_map(p99).collect::<Vec<_>>().join(", ")
    );
    if let (Some(plain), Some(mtls)) = (f.median(System::AmbitPlain), f.median(System::AmbitMtls)) {
        out.push_str(&format!(" (Ambit mTLS − plaintext {} µs)", signed_us(mtls - plain)));
    }
    out.push_str(&spread(f));
    let parts: Vec<String> = measured(usage, &f.scenario)
        .into_iter()
        .map(|(s, n)| {
            format!(
                "{} {} µs CPU, {} wake-ups, {} µs CPU and {} µs run-queue wait per wake-up",
                s.label(),
                per_node(&n, |x| us(x.cpu_us)),
                per_node(&n, |x| format!("{:.2}", x.wakeups)),
                per_node(&n, |x| us(x.cpu_per_wakeup_us)),
                per_node(&n, |x| us(x.wait_per_wakeup_us)),
            )
        })
        .collect();
    if !parts.is_empty() {
        out.push_str(&format!("; per request, node 1 / node 2 proxy: {}", parts.join("; ")));
    }
    out
}

/// With more than one repetition, each compared system's runs: how far the figure moved
/// between repetitions of the same system.
fn spread(f: &PeerFigure) -> String {
    let runs: Vec<String> = COMPARED
        .iter()
        .filter_map(|s| Some((s, f.runs.get(s).filter(|r| r.len() > 1)?)))
        .map(|(s, r)| format!("{} {} µs", s.label(), r.iter().map(|&x| us(x)).collect::<Vec<_>>().join(", ")))
        .collect();
    if runs.is_empty() {
        return String::new();
    }
    format!("; by repetition: {}", runs.join("; "))
}

/// P5: the bytes per idle connection on each node, and the RSS with them open.
fn memory(all: &[PeerFigure]) -> String {
    let find = |metric: &str| all.iter().find(|f| f.scenario == MEMORY && f.metric == metric);
    let node = |s: System, i: usize| find(&format!("of which node {i}'s proxy")).and_then(|f| f.median(s));
    let rss = find("proxies' RSS, both nodes, connections open");
    let parts: Vec<String> = COMPARED
        .iter()
        .filter_map(|&s| {
            let (a, b) = (node(s, 1)?, node(s, 2)?);
            let total = rss.and_then(|f| f.median(s)).map(|m| format!(", {m:.1} MiB RSS in all with them open")).unwrap_or_default();
            Some(format!("{} {a:.0} bytes on node 1 and {b:.0} on node 2{total}", s.label()))
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!("per idle connection, {}", parts.join("; "))
}

/// P6: failures per repetition, the longest gap per kind of traffic, and when the
/// hand-over's steps ended.
fn restart(usage: &Usage) -> String {
    [System::AmbitPlain, System::AmbitMtls, System::Ztunnel]
        .iter()
        .filter_map(|s| Some((s, usage.restarts.get(s).filter(|r| !r.is_empty())?)))
        .map(|(s, runs)| format!("{}: {}", s.label(), restart_runs(runs)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn restart_runs(runs: &[RestartRun]) -> String {
    let m = |f: &dyn Fn(&RestartRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    let errors: Vec<String> = runs.iter().map(|r| r.errors.map_or("?".into(), |e| e.to_string())).collect();
    let mut kinds: Vec<&str> = runs.iter().flat_map(|r| r.gaps_ms.iter().map(|(k, _)| k.as_str())).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let gaps: Vec<String> = kinds
        .iter()
        .map(|k| {
            let gap = m(&|r| r.gaps_ms.iter().find(|(n, _)| n == k).map_or(f64::NAN, |(_, g)| *g));
            format!("{k} {gap:.0} ms")
        })
        .collect();
    let mut out = format!(
        "{} failed (per repetition), longest gap {}; the hand-over began {:.1} s into the load, the successor served after {:.0} ms \
         and the old proxy had exited {:.0} ms after the hand-over began",
        errors.join(", "),
        gaps.join(", "),
        m(&|r| r.began_s),
        m(&|r| r.handover.successor_ready.as_secs_f64() * 1000.0),
        m(&|r| r.handover.old_gone.as_secs_f64() * 1000.0),
    );
    let at: Vec<String> = runs.iter().flat_map(|r| r.error_at_s.iter()).take(5).map(|t| format!("{t:.2} s")).collect();
    if !at.is_empty() {
        out.push_str(&format!("; failures at {}", at.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::procs::CpuUse;
    use crate::bench::report::Better;
    use crate::bench::peers::usage::{Handover, ProxyUse};

    fn cpu(user_s: f64, system_s: f64, switches: u64, delay_s: f64) -> CpuUse {
        CpuUse { user_s, system_s, voluntary_switches: switches, run_s: user_s + system_s, run_delay_s: delay_s }
    }

    fn figure(scenario: &str, metric: &str, values: &[(System, f64)]) -> PeerFigure {
        let mut f = PeerFigure::new(scenario, metric, "µs", Better::Lower);
        for &(s, v) in values {
            f.push(s, v);
        }
        f
    }

    #[test]
    fn the_1k_p99_is_explained_by_wakeups_and_waits_per_node() {
        let s = rate_scenario(1_000);
        let mut usage = Usage::default();
        let nodes = vec![cpu(0.2, 0.1, 3_000, 0.03), cpu(0.1, 0.05, 2_000, 0.01)];
        usage.record(&s, System::AmbitMtls, ProxyUse { requests: 1_000, nodes });
        usage.record(&s, System::Ztunnel, ProxyUse { requests: 1_000, nodes: vec![cpu(0.1, 0.1, 1_000, 0.0), cpu(0.1, 0.0, 1_000, 0.0)] });
        let values = [(System::Direct, 400.0), (System::AmbitPlain, 480.0), (System::AmbitMtls, 640.0), (System::Ztunnel, 530.0)];
        let mut figs = vec![figure(&s, "latency p99", &values), figure(&s, "latency p50", &values)];
        attach(&mut figs, &usage);
        let why = &figs[0].why;
        for part in [
            "Ambit mTLS 640 µs",
            "(Ambit mTLS − plaintext +160 µs)",
            "Ambit mTLS 300 / 150 µs CPU, 3.00 / 2.00 wake-ups, 100 / 75.0 µs CPU and 10.0 / 5.0 µs run-queue wait",
            "ztunnel mTLS 200 / 100 µs CPU, 1.00 / 1.00 wake-ups",
        ] {
            assert!(why.contains(part), "{part:?} missing from {why:?}");
        }
        assert!(figs[1].why.is_empty(), "only the p99 is explained: {:?}", figs[1].why);
        assert!(!why.contains("by repetition"), "one repetition has no spread: {why}");
        figs[0].push(System::AmbitMtls, 900.0);
        figs[0].push(System::Ztunnel, 520.0);
        attach(&mut figs, &usage);
        assert!(figs[0].why.contains("by repetition: Ambit mTLS 640, 900 µs; ztunnel mTLS 530, 520 µs"), "{}", figs[0].why);
    }

    #[test]
    fn the_cpu_split_leaves_out_systems_not_measured() {
        let mut usage = Usage::default();
        usage.record(THROUGHPUT, System::AmbitMtls, ProxyUse { requests: 10_000, nodes: vec![cpu(0.2, 0.1, 100, 0.0), cpu(0.1, 0.1, 60, 0.0)] });
        let metric = "proxies' CPU per request, both nodes";
        let mut figs = vec![figure(THROUGHPUT, metric, &[(System::AmbitPlain, 25.0), (System::AmbitMtls, 50.0)])];
        attach(&mut figs, &usage);
        let why = &figs[0].why;
        assert!(why.contains("Ambit mTLS 20.0 / 10.0 µs user + 10.0 / 10.0 µs kernel, 0.01 / 0.01 wake-ups"), "{why}");
        assert!(why.contains("Ambit mTLS − plaintext +25.0 µs"), "{why}");
        assert!(!why.contains("ztunnel"), "ztunnel was not measured: {why}");
    }

    #[test]
    fn memory_is_split_by_node_from_the_sibling_figures() {
        let per_conn = figure(MEMORY, "proxies' memory per idle connection", &[(System::AmbitMtls, 3_500.0), (System::Ztunnel, 9_000.0)]);
        let n1 = figure(MEMORY, "of which node 1's proxy", &[(System::AmbitMtls, 3_480.0), (System::Ztunnel, 4_500.0)]);
        let n2 = figure(MEMORY, "of which node 2's proxy", &[(System::AmbitMtls, 20.0), (System::Ztunnel, 4_500.0)]);
        let mut figs = vec![per_conn, n1, n2];
        attach(&mut figs, &Usage::default());
        assert_eq!(
            figs[0].why,
            "per idle connection, Ambit mTLS 3480 bytes on node 1 and 20 on node 2; ztunnel mTLS 4500 bytes on node 1 and 4500 on node 2"
        );
    }

    #[test]
    fn a_restart_names_its_failures_gaps_and_hand_over_steps() {
        let mut usage = Usage::default();
        let handover = Handover { successor_ready: Duration::from_millis(800), old_gone: Duration::from_millis(1_900) };
        let gaps_ms = vec![("keepalive".to_string(), 70.0), ("new_conn".to_string(), 20.0)];
        let run = RestartRun { handover, began_s: 3.0, errors: Some(2), gaps_ms, error_at_s: vec![3.85, 3.9] };
        usage.restart(System::AmbitMtls, run);
        let mut figs = vec![figure(RESTART, "failed requests", &[(System::AmbitMtls, 2.0)])];
        attach(&mut figs, &usage);
        assert_eq!(
            figs[0].why,
            "Ambit mTLS: 2 failed (per repetition), longest gap keepalive 70 ms, new_conn 20 ms; the hand-over began 3.0 s into \
             the load, the successor served after 800 ms and the old proxy had exited 1900 ms after the hand-over began; \
             failures at 3.85 s, 3.90 s"
        );
    }

    #[test]
    fn differences_keep_their_sign() {
        assert_eq!(signed_us(-2650.4), "−2650");
        assert_eq!(signed_us(19.04), "+19.0");
        assert_eq!(signed_us(0.0), "+0.0");
    }

    #[test]
    fn nothing_measured_explains_nothing() {
        let mut figs = vec![figure(MEMORY, "proxies' memory per idle connection", &[(System::AmbitMtls, 1.0)])];
        attach(&mut figs, &Usage::default());
        assert!(figs[0].why.is_empty(), "{:?}", figs[0].why);
    }
}
