//! Scenario 8: cross-node calls, plaintext (mesh off) vs mutual TLS (HBONE), in one
//! run: latency at 1k req/s, the agents' CPU per request, TLS handshakes per
//! application connection, and bulk TCP throughput over one connection.
//!
//! In the report, the "Ambit" column is mTLS and the "direct" column is plaintext
//! (both through the two node proxies); "Ambit/direct" is the mTLS/plaintext ratio.

use anyhow::{bail, Result};
use serde_json::Value;

use super::cross_world::{CrossWorld, Wire};
use super::loadgen::{ambit_load_in, h2load_in};
use super::profile::Profile;
use super::report::{median, Better, Figure, Report};
use super::Plan;

const SCENARIO: &str = "8 cross-node, mTLS vs plaintext";
const RATE: u64 = 1_000;
const COLUMNS: &str = "Ambit column: mTLS (HBONE) between the node proxies; direct column: the same path in plaintext (mesh off)";

/// One wire's measurements.
#[derive(Debug, Default)]
struct Sample {
    p50_us: f64,
    p99_us: f64,
    /// Both agents' CPU time per request under h2load, in µs.
    cpu_us_per_request: f64,
    /// Client-side TLS handshakes per new application connection (mTLS only).
    handshakes_per_connection: Option<f64>,
    connections: u64,
    tcp_gbit_per_s: f64,
}

fn load(world: &CrossWorld, args: &[&str]) -> Result<Value> {
    ambit_load_in(&world.client, world.client_cpu(), world.load_bin(), args)
}

fn latency(world: &CrossWorld, plan: &Plan, s: &mut Sample) -> Result<()> {
    let addr = world.service(80)?.to_string();
    let (rate, requests) = (RATE.to_string(), (RATE * plan.rate_secs).to_string());
    let v = load(world, &["rate", "--addr", &addr, "--rate", &rate, "--requests", &requests, "--connections", "64"])?;
    if v["errors"].as_u64() != Some(0) || v["timed_out"] == true {
        bail!("{addr} at {RATE}/s: {v}");
    }
    s.p50_us = v["latency"]["p50_us"].as_f64().unwrap_or(f64::NAN);
    s.p99_us = v["latency"]["p99_us"].as_f64().unwrap_or(f64::NAN);
    Ok(())
}

fn cpu(world: &CrossWorld, plan: &Plan, s: &mut Sample) -> Result<()> {
    let url = format!("http://{}/", world.service(80)?);
    let requests = plan.requests / 2;
    let profile = Profile::start(&format!("cross-node-{}", world.wire.map(|w| format!("{w:?}")).unwrap_or_default()), &world.agent_pids)?;
    let cpu0 = world.agents_cpu_seconds()?;
    let r = h2load_in(&world.client, world.client_cpu(), &url, requests, 64, &["--h1"])?;
    let cpu = world.agents_cpu_seconds()? - cpu0;
    profile.stop()?;
    if r.failed > 0 || r.succeeded == 0 {
        bail!("{url}: {} of {requests} requests failed", r.failed);
    }
    s.cpu_us_per_request = cpu / r.succeeded as f64 * 1e6;
    Ok(())
}

fn handshakes(world: &CrossWorld, plan: &Plan, s: &mut Sample) -> Result<()> {
    let addr = world.service(80)?.to_string();
    let count = plan.connections / 2;
    let before = (world.wire == Some(Wire::Mtls)).then(|| world.client_handshakes()).transpose()?;
    let v = load(world, &["connect", "--addr", &addr, "--count", &count.to_string(), "--http"])?;
    if v["errors"].as_u64() != Some(0) {
        bail!("{count} connections to {addr}: {v}");
    }
    if let Some(before) = before {
        let after = world.client_handshakes()?;
        s.handshakes_per_connection = Some((after - before) as f64 / count as f64);
    }
    s.connections = count;
    Ok(())
}

fn tcp(world: &CrossWorld, plan: &Plan, s: &mut Sample) -> Result<()> {
    let addr = world.service(9000)?.to_string();
    let v = load(world, &["tcp", "--addr", &addr, "--bytes", &(plan.tcp_bytes / 2).to_string()])?;
    s.tcp_gbit_per_s = v["gbit_per_s"].as_f64().unwrap_or(f64::NAN);
    Ok(())
}

/// Starts the agents with `wire`, warms up (certificates, pooled tunnel), measures.
fn sample(world: &mut CrossWorld, wire: Wire, plan: &Plan) -> Result<Sample> {
    world.start_agents(wire)?;
    let addr = world.service(80)?.to_string();
    // Warm-up; the first calls may wait for certificates.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let v = load(world, &["rate", "--addr", &addr, "--rate", "200", "--requests", "200", "--connections", "8"])?;
        if v["errors"].as_u64() == Some(0) {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("{wire:?}: warm-up calls still fail: {v}");
        }
    }
    let mut s = Sample::default();
    latency(world, plan, &mut s)?;
    cpu(world, plan, &mut s)?;
    handshakes(world, plan, &mut s)?;
    tcp(world, plan, &mut s)?;
    Ok(s)
}

pub fn run(world: &mut CrossWorld, plan: &Plan, report: &mut Report) -> Result<()> {
    let (mut plain, mut mtls) = (Vec::new(), Vec::new());
    for _ in 0..plan.reps {
        plain.push(sample(world, Wire::Plaintext, plan)?);
        mtls.push(sample(world, Wire::Mtls, plan)?);
    }
    let figure = |metric: &str, unit: &str, better: Better, pick: &dyn Fn(&Sample) -> f64| {
        let mut f = Figure::new(SCENARIO, metric, unit, better);
        f.ambit = mtls.iter().map(pick).collect();
        f.direct = plain.iter().map(pick).collect();
        f
    };
    report.push(figure("latency p50 at 1k req/s", "µs", Better::Lower, &|s| s.p50_us));
    let p99 = figure("latency p99 at 1k req/s", "µs", Better::Lower, &|s| s.p99_us);
    let plain_p99 = median(&p99.direct).unwrap_or(f64::NAN);
    let mut added = Figure::new(SCENARIO, "p99 added by mTLS at 1k req/s", "µs", Better::Lower);
    added.ambit = p99.ambit.iter().map(|x| x - plain_p99).collect();
    report.push(p99.note(format!("{COLUMNS}; ambit-load rate, 64 keep-alive connections, open loop")));
    report.push(added.target("≤ 200 µs (Istio: 0.20 ms p99 for two ztunnel hops)", |_, m| m <= 200.0).note(
        "mTLS p99 minus the median plaintext p99 of the same run",
    ));
    let cpu = figure("both agents' CPU per request", "µs", Better::Lower, &|s| s.cpu_us_per_request);
    report.push(cpu.target("mTLS ≤ 1.5× plaintext", |f, _| f.ratio_to_direct().is_some_and(|r| r <= 1.5)).note(format!(
        "{COLUMNS}; utime+stime of both agents (/proc) over h2load --h1 -c 64, {} requests",
        plan.requests / 2
    )));
    let mut hs = Figure::new(SCENARIO, "TLS handshakes per application connection", "handshakes", Better::Lower);
    hs.ambit = mtls.iter().filter_map(|s| s.handshakes_per_connection).collect();
    let connections = mtls.first().map(|s| s.connections).unwrap_or(0);
    report.push(hs.target("≤ 0.01 (no handshake per connection)", |_, m| m <= 0.01).note(format!(
        "growth of node 1's ambit_hbone_client_handshakes_total over {connections} sequential new connections, one HTTP request each (pool warm)"
    )));
    let tput = figure("bulk TCP throughput, one connection", "Gbit/s", Better::Higher, &|s| s.tcp_gbit_per_s);
    report.push(tput.target("mTLS ≥ 70% of plaintext", |f, _| f.ratio_to_direct().is_some_and(|r| r >= 0.7)).note(format!(
        "{COLUMNS}; {} MiB written and echoed back through the opaque TCP port; both agents share CPU 0, so with mTLS one core does both nodes' encryption and decryption",
        (plan.tcp_bytes / 2) >> 20
    )));
    Ok(())
}
