//! Scenario 2: fixed rates (1k, 2k, 5k and 10k requests/s), open loop without
//! coordinated omission (ambit-load rate), latency p50/p99/p99.9, and the proxy's CPU
//! time. The points also go to the latency-against-rate plot.

use anyhow::{bail, Result};
use serde_json::Value;

use super::loadgen::ambit_load;
use super::plot::{LatencyPoint, System};
use super::procs::cpu_seconds;
use super::report::{median, Better, Figure, Report};
use super::world::{World, MATCH_HEADER};
use super::Plan;

struct Run {
    p50: f64,
    p99: f64,
    p999: f64,
    /// Proxy CPU seconds per 1,000 requests.
    cpu_per_1k: f64,
    /// Proxy cores used per 1,000 requests/s.
    cores_per_krps: f64,
}

fn one(world: &World, addr: &str, rate: u64, requests: u64, pid: Option<i32>) -> Result<Run> {
    let cpu0 = pid.map(cpu_seconds).transpose()?;
    let (r, n) = (rate.to_string(), requests.to_string());
    let v: Value = ambit_load(
        world,
        &["rate", "--addr", addr, "--header", MATCH_HEADER, "--rate", &r, "--requests", &n, "--connections", "64"],
    )?;
    if v["errors"].as_u64() != Some(0) || v["timed_out"] == true {
        bail!("{addr} at {rate}/s: {v}");
    }
    let cpu = match (pid, cpu0) {
        (Some(p), Some(c0)) => cpu_seconds(p)? - c0,
        _ => f64::NAN,
    };
    let elapsed = v["elapsed_s"].as_f64().unwrap_or(f64::NAN);
    let l = &v["latency"];
    let get = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
    Ok(Run {
        p50: get("p50_us"),
        p99: get("p99_us"),
        p999: get("p999_us"),
        cpu_per_1k: cpu / (requests as f64 / 1000.0) * 1000.0,
        cores_per_krps: cpu / elapsed / (v["achieved_rps"].as_f64().unwrap_or(f64::NAN) / 1000.0),
    })
}

/// The fixed rates, with the target on the p99 the proxy adds over direct (where set).
const RATES: [(u64, Option<f64>); 4] = [(1_000, Some(150.0)), (2_000, None), (5_000, None), (10_000, Some(500.0))];

/// The medians of `p50`, `p99`, `p999` for each system, as plot points at `rate`.
fn points(rate: u64, figures: [&Figure; 3]) -> Vec<LatencyPoint> {
    let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let [p50, p99, p999] = figures;
    [(System::Direct, 0), (System::Ambit, 1), (System::HAProxy, 2)]
        .into_iter()
        .map(|(system, i)| {
            let pick = |f: &Figure| m([&f.direct, &f.ambit, &f.haproxy][i]);
            LatencyPoint { system, rate, p50: pick(p50), p99: pick(p99), p999: pick(p999) }
        })
        .collect()
}

pub fn run(world: &World, haproxy_pid: i32, plan: &Plan, report: &mut Report, plot: &mut Vec<LatencyPoint>) -> Result<()> {
    let ambit = world.service("echo", 80)?.to_string();
    let direct = world.direct_http().to_string();
    let haproxy = world.haproxy_addr().to_string();
    for (rate, added_target) in RATES {
        let scenario = format!("2 fixed rate {}k req/s", rate / 1000);
        let requests = rate * plan.rate_secs;
        let mut p50 = Figure::new(&scenario, "latency p50", "µs", Better::Lower);
        let mut p99 = Figure::new(&scenario, "latency p99", "µs", Better::Lower);
        let mut p999 = Figure::new(&scenario, "latency p99.9", "µs", Better::Lower);
        let mut cpu = Figure::new(&scenario, "proxy CPU per 1,000 requests", "ms", Better::Lower);
        let mut cores = Figure::new(&scenario, "proxy cores per 1,000 req/s", "cores", Better::Lower);
        for _ in 0..plan.reps {
            let d = one(world, &direct, rate, requests, None)?;
            let a = one(world, &ambit, rate, requests, Some(world.agent_pid))?;
            let h = one(world, &haproxy, rate, requests, Some(haproxy_pid))?;
            for (f, pick) in [(&mut p50, 0), (&mut p99, 1), (&mut p999, 2)] {
                let g = |r: &Run| [r.p50, r.p99, r.p999][pick];
                f.direct.push(g(&d));
                f.ambit.push(g(&a));
                f.haproxy.push(g(&h));
            }
            cpu.ambit.push(a.cpu_per_1k);
            cpu.haproxy.push(h.cpu_per_1k);
            cores.ambit.push(a.cores_per_krps);
            cores.haproxy.push(h.cores_per_krps);
        }
        plot.extend(points(rate, [&p50, &p99, &p999]));
        let direct_p99 = median(&p99.direct).unwrap_or(f64::NAN);
        let mut added = Figure::new(&scenario, "added p99 over direct", "µs", Better::Lower);
        added.ambit = p99.ambit.iter().map(|x| x - direct_p99).collect();
        added.haproxy = p99.haproxy.iter().map(|x| x - direct_p99).collect();
        for f in [p50, p99, p999] {
            report.push(f);
        }
        let added = added.note(
            "latency measured from each request's due time (open loop, no coordinated omission), ambit-load, 64 keep-alive connections",
        );
        let Some(target) = added_target else {
            // The rates between the targets' feed the plot; their CPU figures add nothing.
            report.push(added);
            continue;
        };
        report.push(added.target(&format!("≤ {target} µs"), move |_, m| m <= target));
        report.push(cpu.note("utime+stime of the proxy process over the run"));
        report.push(cores.target("≤ 0.05 (ztunnel L4: 0.06, waypoint L7: 0.25)", |_, m| m <= 0.05));
    }
    Ok(())
}
