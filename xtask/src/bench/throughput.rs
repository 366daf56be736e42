//! Scenario 1: HTTP/1.1 keep-alive, 64 connections, maximum throughput (h2load --h1),
//! direct vs Ambit vs HAProxy, with the proxy's throughput per core of CPU time.

use anyhow::Result;

use super::loadgen::h2load;
use super::procs::cpu_seconds;
use super::report::{median, Better, Figure, Report};
use super::Plan;
use super::world::World;

const SCENARIO: &str = "1 HTTP/1.1 max throughput (64 conns)";

pub fn run(world: &World, haproxy_pid: i32, plan: &Plan, report: &mut Report) -> Result<()> {
    let ambit_url = format!("http://{}/", world.service("echo", 80)?);
    let direct_url = format!("http://{}/", world.direct_http());
    let haproxy_url = format!("http://{}/", world.haproxy_addr());
    let mut rps = Figure::new(SCENARIO, "throughput", "req/s", Better::Higher);
    let mut per_core = Figure::new(SCENARIO, "throughput per proxy core", "req/s per core-second", Better::Higher);
    // Warm-up: connections, pools, caches.
    for url in [&direct_url, &ambit_url, &haproxy_url] {
        h2load(world, url, plan.requests / 10, 64, &["--h1"])?;
    }
    for _ in 0..plan.reps {
        rps.direct.push(h2load(world, &direct_url, plan.requests, 64, &["--h1"])?.requests_per_s);
        for (pid, url, is_ambit) in [(world.agent_pid, &ambit_url, true), (haproxy_pid, &haproxy_url, false)] {
            let cpu0 = cpu_seconds(pid)?;
            let r = h2load(world, url, plan.requests, 64, &["--h1"])?;
            let cpu = cpu_seconds(pid)? - cpu0;
            if r.failed > 0 {
                anyhow::bail!("{url}: {} of {} requests failed", r.failed, plan.requests);
            }
            let core = if cpu > 0.0 { r.succeeded as f64 / cpu } else { f64::NAN };
            let (a, b) = if is_ambit { (&mut rps.ambit, &mut per_core.ambit) } else { (&mut rps.haproxy, &mut per_core.haproxy) };
            a.push(r.requests_per_s);
            b.push(core);
        }
    }
    report.push(rps.note("h2load --h1 -c 64 -t 1; proxy on CPU 0, h2load and the echo pods on CPU 1"));
    let ha = median(&per_core.haproxy);
    report.push(
        per_core
            .target("≥ HAProxy's", move |_, m| ha.is_some_and(|h| m >= h))
            .note("requests served per second of the proxy's own CPU time (utime+stime from /proc)"),
    );
    Ok(())
}

/// Scenario 1 again for Ambit alone, with its data-path metrics on and off
/// (`--no-metrics`), access logs off in both: the agent is restarted for each run and
/// the two settings alternate, so drift on the machine hits both alike.
pub fn metrics_overhead(world: &mut World, plan: &Plan, report: &mut Report) -> Result<()> {
    let url = format!("http://{}/", world.service("echo", 80)?);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..plan.reps {
        for metrics in [false, true] {
            world.start_agent_with(if metrics { &[] } else { &["--no-metrics"] })?;
            h2load(world, &url, plan.requests / 10, 64, &["--h1"])?; // warm-up
            let r = h2load(world, &url, plan.requests, 64, &["--h1"])?;
            if r.failed > 0 {
                anyhow::bail!("{url}: {} of {} requests failed", r.failed, plan.requests);
            }
            if metrics { &mut on } else { &mut off }.push(r.requests_per_s);
        }
    }
    // Leave the agent as the other scenarios had it.
    world.start_agent_with(&[])?;
    let (with, without) = (median(&on).unwrap_or(f64::NAN), median(&off).unwrap_or(f64::NAN));
    let mut loss = Figure::new(SCENARIO, "throughput lost to metrics", "%", Better::Lower);
    loss.ambit.push((1.0 - with / without) * 100.0);
    report.push(loss.target("≤ 3%", |_, m| m <= 3.0).note(format!(
        "median of {} runs each: {with:.0} req/s with metrics, {without:.0} req/s with --no-metrics; access logs off",
        plan.reps
    )));
    Ok(())
}
