//! Scenario 6: proxy memory with many idle proxied HTTP/1.1 connections (one request
//! each, then idle): RSS growth per connection, Ambit vs HAProxy.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::loadgen::spawn_ambit_load;
use super::procs::{rss_bytes, settled_rss};
use super::report::{Better, Figure, Report};
use super::world::{World, MATCH_HEADER};
use super::Plan;

/// How long the connections are left idle before the RSS is read.
const IDLE_BEFORE_MEASURING: Duration = Duration::from_secs(3);

/// RSS growth of `pid` while `connections` idle connections to `addr` are open.
fn one(world: &World, pid: i32, addr: &str, connections: usize) -> Result<(f64, f64)> {
    let before = settled_rss(&[pid])?[0];
    let n = connections.to_string();
    let mut child = spawn_ambit_load(
        world,
        &["idle", "--addr", addr, "--header", MATCH_HEADER, "--connections", &n, "--hold-secs", "60"],
    )?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line)?;
    let opened = ambit_e2e::load_output::idle_opened(&line).unwrap_or(0);
    // Idle means idle: Ambit parks a keep-alive connection (drops its HTTP state) a
    // second or so after its last request, HAProxy releases its buffers at once.
    std::thread::sleep(IDLE_BEFORE_MEASURING);
    let during = rss_bytes(pid)?;
    drop(child.stdin.take());
    let _ = child.wait_with_output();
    if opened < connections {
        bail!("only {opened} of {connections} idle connections to {addr} opened ({line:?})");
    }
    let per = (during as f64 - before as f64) / connections as f64;
    Ok((during as f64 / (1 << 20) as f64, per))
}

pub fn run(world: &World, haproxy_pid: i32, plan: &Plan, report: &mut Report) -> Result<()> {
    let ambit = world.service("echo", 80)?.to_string();
    let haproxy = world.haproxy_addr().to_string();
    let scenario = format!("6 memory, {} idle proxied conns", plan.idle_connections);
    let mut rss = Figure::new(&scenario, "proxy RSS", "MiB", Better::Lower);
    let mut per = Figure::new(&scenario, "proxy memory per idle connection", "bytes", Better::Lower);
    for _ in 0..plan.reps {
        let (r, p) = one(world, world.agent_pid, &ambit, plan.idle_connections)?;
        rss.ambit.push(r);
        per.ambit.push(p);
        match one(world, haproxy_pid, &haproxy, plan.idle_connections) {
            Ok((r, p)) => {
                rss.haproxy.push(r);
                per.haproxy.push(p);
            }
            Err(e) => report.fail("6 memory (HAProxy)", format!("{e:#}")),
        }
    }
    report.push(rss.note("VmRSS while the connections are open, 3 s after the last one was opened; the RSS before is read once it has stopped falling"));
    report.push(
        per.target("≤ 8 KiB", |_, m| m <= 8192.0)
            .note("(RSS with the connections open − RSS before) / connections; the kernel's socket buffers are not in RSS"),
    );
    Ok(())
}
