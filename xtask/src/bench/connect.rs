//! Scenario 3: a new connection per request, and the cost of the connect hook itself.
//!
//! - Connection rate and latency (connect + one HTTP request + RST close), sequential,
//!   to the Service through Ambit, to the pod directly, and through HAProxy.
//! - The hook's cost: connect() latency from the enrolled client pod to a pod IP
//!   (the hook runs, finds the destination is no Service, and lets the connection
//!   through unchanged), with the programs attached and after `ambit-agent uninstall`
//!   detached them, in alternating rounds; and the kernel's own run time of the
//!   programs over the attached rounds (BPF run-time statistics, from `/redirect`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::loadgen::ambit_load;
use super::report::{Better, Figure, Report};
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

/// connect() p50 to a pod IP over `count` sequential connects, in µs.
fn connect_p50(world: &World, count: u64) -> Result<f64> {
    let v = conns(world, &world.direct_http().to_string(), count, false)?;
    Ok(v["connect"]["p50_us"].as_f64().unwrap_or(f64::NAN))
}

/// The kernel's run count and run time (ns) of each of the agent's programs, from `/redirect`.
fn program_runs(world: &World) -> Result<BTreeMap<String, (u64, u64)>> {
    let dump = world.agent.as_ref().context("no agent")?.redirect_dump()?;
    if dump["runStatsEnabled"] != true {
        bail!("the agent has BPF run-time statistics off: {}", dump["runStatsEnabled"]);
    }
    let programs = dump["programs"].as_array().context("/redirect has no programs")?;
    programs
        .iter()
        .map(|p| {
            let name = p["program"].as_str().context("program without a name")?;
            Ok((name.to_owned(), (p["runCount"].as_u64().unwrap_or(0), p["runTimeNs"].as_u64().unwrap_or(0))))
        })
        .collect()
}

/// The kernel's figures over one attached sample: connect4's ns per run, and all
/// programs' run time per connect().
#[derive(Clone, Copy, Debug)]
struct KernelCost {
    connect4_ns: f64,
    all_ns_per_connect: f64,
}

fn kernel_cost(before: &BTreeMap<String, (u64, u64)>, after: &BTreeMap<String, (u64, u64)>, connects: u64) -> Result<KernelCost> {
    let delta = |name: &str| -> (u64, u64) {
        let (b, a) = (before.get(name).copied().unwrap_or_default(), after.get(name).copied().unwrap_or_default());
        (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))
    };
    let (runs, time) = delta("ambit_connect4");
    if runs < connects {
        bail!("connect4 ran {runs} times for {connects} connects: are the statistics on?");
    }
    let all: u64 = after.keys().map(|name| delta(name).1).sum();
    Ok(KernelCost { connect4_ns: time as f64 / runs as f64, all_ns_per_connect: all as f64 / connects as f64 })
}

/// The connect hook's cost, attached and detached samples interleaved: each round
/// measures connect() latency with the agent's programs attached (reading the kernel's
/// run statistics of its programs around it), stops the agent (`ambit-agent
/// uninstall` detaches them), measures again, and starts the agent for the next round.
pub fn hook_cost(world: &mut World, plan: &Plan, report: &mut Report) -> Result<()> {
    let (mut attached, mut detached, mut kernel) = (Vec::new(), Vec::new(), Vec::new());
    let count = plan.connections;
    for _ in 0..plan.reps.max(3) {
        if world.agent.is_none() {
            world.start_agent()?;
        }
        let before = program_runs(world)?;
        attached.push(connect_p50(world, count)?);
        kernel.push(kernel_cost(&before, &program_runs(world)?, count)?);
        world.agent = None; // stops the agent and runs `ambit-agent uninstall`
        detached.push(connect_p50(world, count)?);
    }
    world.start_agent()?;
    report_hook(attached, detached, &kernel, report);
    Ok(())
}

/// Reports the hook's cost from the interleaved samples.
fn report_hook(attached: Vec<f64>, detached: Vec<f64>, kernel: &[KernelCost], report: &mut Report) {
    let mut f = Figure::new(SCENARIO, "connect() p50 to a pod IP, hooks attached", "µs", Better::Lower);
    f.ambit = attached.clone();
    f.direct = detached.clone();
    report.push(f.note("'direct' column: the same connects with the programs detached (ambit-agent uninstall); rounds alternate attached and detached"));
    let mut added = Figure::new(SCENARIO, "connect() latency added by the hooks", "µs", Better::Lower);
    added.ambit = attached.iter().zip(&detached).map(|(a, d)| a - d).collect();
    report.push(added.note(
        "per round, median connect() latency attached minus detached (same pod, same destination, not redirected); \
         includes the wake-ups and cache effects around the programs, not only their run time",
    ));
    let mut own = Figure::new(SCENARIO, "connect hook run time per connect() (kernel BPF statistics)", "ns", Better::Lower);
    own.ambit = kernel.iter().map(|k| k.connect4_ns).collect();
    report.push(own.target("≤ 2000 ns", |_, m| m <= 2000.0).note(
        "run_time_ns / run_cnt of ambit_connect4 over the attached samples (kernel.bpf_stats_enabled, held on by the agent)",
    ));
    let mut all = Figure::new(SCENARIO, "all eBPF programs' run time per connect()", "ns", Better::Lower);
    all.ambit = kernel.iter().map(|k| k.all_ns_per_connect).collect();
    report.push(all.note("every Ambit program (connect4, sockops at establishment, sock_release, ...) summed, divided by the connects"));
}
