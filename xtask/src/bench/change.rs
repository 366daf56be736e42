//! Scenario 7, in the bed: with 10,000 Services and 20,000 HTTPRoutes in the agent's
//! manifests, the time from rewriting an HTTPRoute (its header modifier's value) to
//! the first request that reaches a backend with the new value.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::control_plane::scale_yaml;
use super::loadgen::ambit_load;
use super::procs::rss_bytes;
use super::report::{Better, Figure, Report};
use super::world::{World, MATCH_HEADER};
use super::Plan;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// One change: rewrite the route with `generation`, poll until a backend sees it; ms.
fn change(world: &World, generation: &str, timeout_ms: u64) -> Result<f64> {
    let addr = world.service("echo", 80)?.to_string();
    let t0 = now_ns();
    world.set_routes(generation)?;
    let limit = timeout_ms.to_string();
    let v = ambit_load(world, &["watch", "--addr", &addr, "--header", MATCH_HEADER, "--expect", generation, "--timeout-ms", &limit])?;
    let seen = v["seen_unix_ns"].as_u64().context("no seen time")?;
    Ok(seen.saturating_sub(t0) as f64 / 1e6)
}

pub fn run(world: &World, plan: &Plan, report: &mut Report) -> Result<()> {
    let scenario = format!("7 control plane in the bed ({} Services, {} routes)", plan.services, plan.services * 2);
    let rss0 = rss_bytes(world.agent_pid)?;
    let scale = world.bed.manifests_dir().join("zz-bench-scale.yaml");
    std::fs::write(&scale, scale_yaml(plan.services, 2))?;
    // The first change after loading the scale objects: wait (bounded) for the agent to take it all in.
    let t = Instant::now();
    let first = change(world, "gen-scale-loaded", 60_000).context("the agent did not take in the scale manifests")?;
    let load_s = t.elapsed().as_secs_f64();
    let rss1 = rss_bytes(world.agent_pid)?;
    let mut times = Figure::new(&scenario, "manifest change → effect", "ms", Better::Lower);
    for i in 0..plan.changes {
        times.ambit.push(change(world, &format!("gen-{i}-{}", now_ns() % 100_000), 10_000)?);
        std::thread::sleep(Duration::from_millis(50));
    }
    if times.ambit.is_empty() {
        bail!("no changes measured");
    }
    let mut sorted = times.ambit.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let p99 = sorted[((sorted.len() as f64 * 0.99).ceil() as usize).clamp(1, sorted.len()) - 1];
    let mut p99f = Figure::new(&scenario, "manifest change → effect, p99", "ms", Better::Lower);
    p99f.ambit = vec![p99];
    report.push(times.note(format!(
        "median over {} changes (each: rewrite the HTTPRoute file, poll through the proxy every 2 ms until the backend sees the new header); first load of the scale manifests took {first:.0} ms ({load_s:.1} s)",
        plan.changes
    )));
    report.push(p99f.target("≤ 1000 ms", |_, m| m <= 1000.0));
    let mut mem = Figure::new(&scenario, "agent RSS growth with the scale manifests", "MiB", Better::Lower);
    mem.ambit = vec![(rss1 as f64 - rss0 as f64) / (1 << 20) as f64];
    report.push(mem.note("VmRSS after minus before loading them (includes the parsed objects, not only the route table)"));
    std::fs::remove_file(&scale)?;
    Ok(())
}
