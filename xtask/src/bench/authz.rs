//! Scenario 10: the cost of authorization (issue 10). HTTP/1.1 keep-alive throughput
//! and the agent's CPU per request through the inbound gate of a one-node mesh, with
//! no policy, with 100 policies of L4 rules and with 100 policies of HTTP rules
//! selecting the echo pod; each repetition runs the three in turn.
//!
//! In the report the "direct" column is the run without policy and the "Ambit" column
//! the run with policies, so "Ambit/direct" is the ratio the target is about.

use anyhow::{bail, Result};

use super::authz_world::{AuthzWorld, Policies, PATH, POLICIES};
use super::loadgen::h2load_in;
use super::procs::{cpu_seconds, cpu_seconds_fine};
use super::report::{Better, Figure, Report};
use super::world::LOAD_CPU;
use super::Plan;

const SCENARIO: &str = "10 authorization, 100 policies (HTTP/1.1, 64 conns)";
const CONNECTIONS: u32 = 64;

/// One configuration's measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    requests_per_s: f64,
    cpu_us_per_request: f64,
    /// The agent's CPU time per second while no load runs (background work).
    idle_cpu_ms_per_s: f64,
}

/// How long the agent's idle CPU time is sampled.
const IDLE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long after a configuration is enforced the idle sample begins: applying it
/// goes on for a while after requests see it (status, the configuration dump, the
/// old configuration dropped), which is not idle work.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Applies `kind`, warms up, and measures one h2load run with the agent's CPU time.
fn sample(world: &mut AuthzWorld, kind: Policies, plan: &Plan) -> Result<Sample> {
    world.set_policies(kind)?;
    std::thread::sleep(SETTLE);
    let (idle0, version0) = (cpu_seconds_fine(world.agent_pid)?, world.config_version()?);
    std::thread::sleep(IDLE);
    let idle_cpu_ms_per_s = (cpu_seconds_fine(world.agent_pid)? - idle0) * 1e3 / IDLE.as_secs_f64();
    let applies = world.config_version()? - version0;
    if applies > 0 {
        let ready = world.readiness()?;
        println!("    {}: {applies} configuration applies while idle; /ready: {}", kind.label(), ready.trim().replace('\n', " | "));
    }
    let url = format!("http://{}{PATH}", world.service()?);
    h2load_in(&world.client, LOAD_CPU, &url, plan.requests / 10, CONNECTIONS, &["--h1"])?;
    let streams0 = world.stream_decisions()?;
    let cpu0 = cpu_seconds(world.agent_pid)?;
    let r = h2load_in(&world.client, LOAD_CPU, &url, plan.requests, CONNECTIONS, &["--h1"])?;
    let cpu = cpu_seconds(world.agent_pid)? - cpu0;
    if r.failed > 0 || r.succeeded == 0 {
        bail!("{}: {} of {} requests failed", kind.label(), r.failed, plan.requests);
    }
    let cpu_us_per_request = cpu / r.succeeded as f64 * 1e6;
    let streams = world.stream_decisions()? - streams0;
    println!(
        "    {}: {:.0} req/s, {cpu_us_per_request:.1} µs agent CPU per request, idle {idle_cpu_ms_per_s:.1} ms CPU/s, {streams} stream decisions",
        kind.label(),
        r.requests_per_s
    );
    Ok(Sample { requests_per_s: r.requests_per_s, cpu_us_per_request, idle_cpu_ms_per_s })
}

pub fn run(world: &mut AuthzWorld, plan: &Plan, report: &mut Report) -> Result<()> {
    let (mut none, mut l4, mut http) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.reps {
        none.push(sample(world, Policies::None, plan)?);
        l4.push(sample(world, Policies::L4, plan)?);
        http.push(sample(world, Policies::Http, plan)?);
    }
    let columns = format!(
        "direct column: no policy; Ambit column: {POLICIES} ALLOW policies selecting the echo pod, the client named only by the last rule of the last one (every rule evaluated); same-node calls through the inbound gate (mesh on); h2load --h1 -c {CONNECTIONS}, {} requests; agent on CPU 0, pods and h2load on CPU 1",
        plan.requests
    );
    for (rules, with, min) in [("L4 rules", &l4, 0.97), ("HTTP rules", &http, 0.90)] {
        let mut rps = Figure::new(SCENARIO, &format!("throughput, {rules}"), "req/s", Better::Higher);
        rps.ambit = with.iter().map(|s| s.requests_per_s).collect();
        rps.direct = none.iter().map(|s| s.requests_per_s).collect();
        let target = format!("≥ {min:.2} × no policy");
        report.push(rps.target(&target, move |f, _| f.ratio_to_direct().is_some_and(|r| r >= min)).note(columns.clone()));
        let mut cpu = Figure::new(SCENARIO, &format!("agent CPU per request, {rules}"), "µs", Better::Lower);
        cpu.ambit = with.iter().map(|s| s.cpu_us_per_request).collect();
        cpu.direct = none.iter().map(|s| s.cpu_us_per_request).collect();
        report.push(cpu.note("utime+stime of the agent (/proc) over the measured h2load run, per request"));
    }
    let mut idle = Figure::new(SCENARIO, "agent CPU without load, HTTP rules", "ms per s", Better::Lower);
    idle.ambit = http.iter().map(|s| s.idle_cpu_ms_per_s).collect();
    idle.direct = none.iter().map(|s| s.idle_cpu_ms_per_s).collect();
    report.push(idle.note(format!("the agent's CPU time (per-thread run time from schedstat, ns resolution) over {} s without load, starting {} s after the configuration is enforced", IDLE.as_secs(), SETTLE.as_secs())));
    Ok(())
}
