//! Scenario 3: a new connection per request, and the cost of the connect hook itself.
//!
//! - Connection rate and latency (connect + one HTTP request + RST close), sequential,
//!   to the Service through Ambit, to the pod directly, and through HAProxy.
//! - The hook's cost: connect() latency from the enrolled client pod to a pod IP
//!   (the hook runs, checks the caller's cgroup and the destination, and lets the
//!   connection through unchanged), with the programs attached, then after
//!   `ambit-agent uninstall` detached them. The difference of the medians is what
//!   the hook's checks add to one connect(); it includes the sockops program that
//!   also runs on established connections.

use anyhow::{bail, Result};
use serde_json::Value;

use super::loadgen::ambit_load;
use super::report::{median, Better, Figure, Report};
use super::world::{World, MATCH_HEADER};
use super::Plan;

const SCENARIO: &str = "3 new connection per request";

fn conns(world: &World, addr: &str, count: u64, http: bool) -> Result<Value> {
    let n = count.to_string();
    let mut args = vec!["connect", "--addr", addr, "--count", &n, "--header", MATCH_HEADER];
    if http {
        args.push("--http");
    }
    let v = ambit_load(world, &args)?;
    if v["errors"].as_u64() != Some(0) {
        bail!("connections to {addr}: {v}");
    }
    Ok(v)
}

/// Connection rate and latency through each system (agent running).
pub fn run_rates(world: &World, plan: &Plan, report: &mut Report) -> Result<()> {
    let ambit = world.service("echo", 80)?.to_string();
    let direct = world.direct_http().to_string();
    let haproxy = world.haproxy_addr().to_string();
    let mut rate = Figure::new(SCENARIO, "connection rate (conn+request+close)", "conn/s", Better::Higher);
    let mut p50 = Figure::new(SCENARIO, "conn+request latency p50", "µs", Better::Lower);
    let mut p99 = Figure::new(SCENARIO, "conn+request latency p99", "µs", Better::Lower);
    for _ in 0..plan.reps {
        for (addr, which) in [(&direct, 0), (&ambit, 1), (&haproxy, 2)] {
            let v = conns(world, addr, plan.connections, true)?;
            let vals = [
                v["rate_per_s"].as_f64().unwrap_or(f64::NAN),
                v["total"]["p50_us"].as_f64().unwrap_or(f64::NAN),
                v["total"]["p99_us"].as_f64().unwrap_or(f64::NAN),
            ];
            for (f, x) in [(&mut rate, vals[0]), (&mut p50, vals[1]), (&mut p99, vals[2])] {
                match which {
                    0 => f.direct.push(x),
                    1 => f.ambit.push(x),
                    _ => f.haproxy.push(x),
                }
            }
        }
    }
    report.push(rate.note("sequential, one connection at a time, closed with RST; through Ambit the connect() is redirected by the hook"));
    report.push(p50);
    report.push(p99);
    Ok(())
}

/// connect() latency to a pod IP, hooks attached: call before [`hook_detached`].
pub fn hook_sample(world: &World, plan: &Plan) -> Result<Vec<f64>> {
    let direct = world.direct_http().to_string();
    let mut out = Vec::new();
    for _ in 0..plan.reps {
        let v = conns(world, &direct, plan.connections * 2, false)?;
        out.push(v["connect"]["p50_us"].as_f64().unwrap_or(f64::NAN));
    }
    Ok(out)
}

/// Reports the hook's cost from samples taken with the programs attached and detached.
pub fn report_hook(attached: Vec<f64>, detached: Vec<f64>, report: &mut Report) {
    let mut f = Figure::new(SCENARIO, "connect() p50 to a pod IP, hooks attached", "µs", Better::Lower);
    f.ambit = attached.clone();
    f.direct = detached.clone();
    report.push(f.note("'direct' column: the same connects with the programs detached (ambit-agent uninstall)"));
    let base = median(&detached).unwrap_or(f64::NAN);
    let mut added = Figure::new(SCENARIO, "connect hook cost per connect()", "µs", Better::Lower);
    added.ambit = attached.iter().map(|a| a - base).collect();
    report.push(
        added
            .target("≤ 2 µs", |_, m| m <= 2.0)
            .note("median connect() latency with the hooks attached minus detached, same pod, same destination (not redirected)"),
    );
}
