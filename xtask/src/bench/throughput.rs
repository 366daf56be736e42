//! Scenario 1: HTTP/1.1 keep-alive, 64 connections, maximum throughput (h2load --h1),
//! direct vs Ambit vs HAProxy, with the proxy's throughput per core of CPU time; with
//! the proxy on one core, then on two (agent `--workers 2`, HAProxy `nbthread 2`).

use anyhow::{Context, Result};

use super::loadgen::h2load;
use super::plot::{CorePoint, System};
use super::procs::{cpu_use, CpuUse};
use super::report::{median, spread, Better, Figure, Report};
use super::user_profile;
use super::Plan;
use super::world::{Cores, World};

const SCENARIO: &str = "1 HTTP/1.1 max throughput (64 conns)";
const SCENARIO_TWO: &str = "1 HTTP/1.1 max throughput, proxy on 2 cores (64 conns)";

/// One core: the proxy on CPU 0, h2load (one thread) and the echo pods on CPU 1.
pub fn run(world: &World, haproxy_pid: i32, plan: &Plan, report: &mut Report, plot: &mut Vec<CorePoint>) -> Result<()> {
    let Measured { rps, per_core, user, kernel } = measure(world, haproxy_pid, plan, SCENARIO)?;
    plot.extend(points(Cores::One, &rps, &per_core));
    report.push(rps.note("h2load --h1 -c 64 -t 1; proxy on CPU 0 (one thread), h2load and the echo pods on CPU 1"));
    let ha = median(&per_core.haproxy);
    let why = format!("{}; {}", split_why(&user, &kernel), profile_why(world, plan, &user));
    report.push(
        per_core
            .target("≥ HAProxy's", move |_, m| ha.is_some_and(|h| m >= h))
            .note("requests served per second of the proxy's own CPU time (utime+stime from /proc)")
            .why(why),
    );
    report.push(user.note("the proxy's user time (/proc utime) over the requests served"));
    report.push(kernel.note("the proxy's system time (/proc stime) over the requests served: socket reads and writes, epoll"));
    Ok(())
}

/// Where the per-request CPU goes, Ambit against HAProxy (user space, kernel).
fn split_why(user: &Figure, kernel: &Figure) -> String {
    let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let (au, hu, ak, hk) = (m(&user.ambit), m(&user.haproxy), m(&kernel.ambit), m(&kernel.haproxy));
    format!(
        "per request Ambit spends {au:.1} µs in user space and {ak:.1} µs in the kernel, HAProxy {hu:.1} and {hk:.1}: \
         the gap is {:+.1} µs in user space (HTTP parsing and routing in hyper/Ambit against HAProxy's) and {:+.1} µs \
         in the kernel (the same socket calls; tokio's wake-ups and epoll)",
        au - hu,
        ak - hk
    )
}

/// Where Ambit's user-space time per request goes, by code: a profiled run of its own
/// (sampling costs a little CPU, so the measured runs are not profiled), its shares
/// scaled to the median user time of the measured runs.
fn profile_why(world: &World, plan: &Plan, user: &Figure) -> String {
    let url = match world.service("echo", 80) {
        Ok(addr) => format!("http://{addr}/"),
        Err(error) => return format!("no profile of Ambit's user space: {error:#}"),
    };
    let file = std::env::temp_dir().join(format!("ambit-bench-user-{}.perf.data", std::process::id()));
    let profile = user_profile::record(world.agent_pid, &file, || h2load(world, &url, plan.requests, 64, &["--h1"]).map(drop));
    let _ = std::fs::remove_file(&file);
    let user_us = median(&user.ambit).unwrap_or(f64::NAN);
    match profile {
        Ok(profile) => format!(
            "Ambit's {user_us:.1} µs of user space per request by code (perf self time in a separate profiled run): {}",
            profile.describe(user_us)
        ),
        Err(error) => format!("no profile of Ambit's user space: {error:#}"),
    }
}

/// Two cores: the agent (`--workers 2`) and HAProxy (`nbthread 2`) restarted on CPUs
/// 0 and 1, which h2load (two threads) and the echo pods share with them. Leaves the
/// world on one core again.
pub fn run_two_cores(world: &mut World, plan: &Plan, report: &mut Report, plot: &mut Vec<CorePoint>) -> Result<()> {
    let haproxy_pid = world.set_cores(Cores::Two)?.context("HAProxy is not running")?;
    let measured = measure(world, haproxy_pid, plan, SCENARIO_TWO);
    world.set_cores(Cores::One)?;
    let Measured { rps, per_core, user, kernel } = measured?;
    plot.extend(points(Cores::Two, &rps, &per_core));
    report.push(rps.note(
        "h2load --h1 -c 64 -t 2; the proxy (2 threads), h2load and the echo pods share CPUs 0 and 1, so the load generator \
         and the backends take CPU from the proxy: compare per-core figures, not throughput, with the one-core run",
    ));
    let ha = median(&per_core.haproxy);
    let mut why = split_why(&user, &kernel);
    if let (Some(one_user), Some(one_kernel)) = (find(report, USER_METRIC), find(report, KERNEL_METRIC)) {
        why = format!("{why}; {}", growth_why((one_user, one_kernel), (&user, &kernel)));
    }
    report.push(
        per_core
            .target("≥ HAProxy's", move |_, m| ha.is_some_and(|h| m >= h))
            .note("requests per second of the proxy's own CPU time, both cores together")
            .why(why),
    );
    Ok(())
}

const USER_METRIC: &str = "proxy user-space CPU per request";
const KERNEL_METRIC: &str = "proxy kernel CPU per request";

/// The one-core run's figure `metric`, if it ran.
fn find<'a>(report: &'a Report, metric: &str) -> Option<&'a Figure> {
    report.figures.iter().find(|f| f.scenario == SCENARIO && f.metric == metric)
}

/// How each proxy's CPU per request changed from one core to two: (user, kernel) figures
/// of the one-core run, then of the two-core run.
fn growth_why(one: (&Figure, &Figure), two: (&Figure, &Figure)) -> String {
    let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let change = |pick: fn(&Figure) -> &[f64]| {
        (m(pick(two.0)) - m(pick(one.0)), m(pick(two.1)) - m(pick(one.1)))
    };
    let (au, ak) = change(|f| &f.ambit);
    let (hu, hk) = change(|f| &f.haproxy);
    format!(
        "from one core to two, Ambit's CPU per request changed by {au:+.1} µs in user space and {ak:+.1} µs in the kernel, \
         HAProxy's by {hu:+.1} and {hk:+.1} µs"
    )
}

/// Plot points (medians) of a run on `cores`.
fn points(cores: Cores, rps: &Figure, per_core: &Figure) -> Vec<CorePoint> {
    let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let cores = cores.threads();
    vec![
        CorePoint { system: System::Direct, cores, per_core: f64::NAN, throughput: m(&rps.direct) },
        CorePoint { system: System::Ambit, cores, per_core: m(&per_core.ambit), throughput: m(&rps.ambit) },
        CorePoint { system: System::HAProxy, cores, per_core: m(&per_core.haproxy), throughput: m(&rps.haproxy) },
    ]
}

/// One scenario 1 run's figures.
struct Measured {
    rps: Figure,
    per_core: Figure,
    /// The proxy's user-space CPU per request (µs).
    user: Figure,
    /// The proxy's kernel CPU per request (µs).
    kernel: Figure,
}

/// Throughput, throughput per proxy core and its split, repetitions of direct, Ambit and
/// HAProxy in turn.
fn measure(world: &World, haproxy_pid: i32, plan: &Plan, scenario: &str) -> Result<Measured> {
    let ambit_url = format!("http://{}/", world.service("echo", 80)?);
    let direct_url = format!("http://{}/", world.direct_http());
    let haproxy_url = format!("http://{}/", world.haproxy_addr());
    let mut m = Measured {
        rps: Figure::new(scenario, "throughput", "req/s", Better::Higher),
        per_core: Figure::new(scenario, "throughput per proxy core", "req/s per core-second", Better::Higher),
        user: Figure::new(scenario, USER_METRIC, "µs", Better::Lower),
        kernel: Figure::new(scenario, KERNEL_METRIC, "µs", Better::Lower),
    };
    // Warm-up: connections, pools, caches.
    for url in [&direct_url, &ambit_url, &haproxy_url] {
        h2load(world, url, plan.requests / 10, 64, &["--h1"])?;
    }
    for _ in 0..plan.reps {
        m.rps.direct.push(h2load(world, &direct_url, plan.requests, 64, &["--h1"])?.requests_per_s);
        for (pid, url, is_ambit) in [(world.agent_pid, &ambit_url, true), (haproxy_pid, &haproxy_url, false)] {
            let before = cpu_use(pid)?;
            let r = h2load(world, url, plan.requests, 64, &["--h1"])?;
            let used: CpuUse = cpu_use(pid)? - before;
            if r.failed > 0 {
                anyhow::bail!("{url}: {} of {} requests failed", r.failed, plan.requests);
            }
            let cpu = used.user_s + used.system_s;
            let core = if cpu > 0.0 { r.succeeded as f64 / cpu } else { f64::NAN };
            let per_request_us = |s: f64| s / r.succeeded.max(1) as f64 * 1e6;
            let pick = |f: &mut Figure, v: f64| if is_ambit { f.ambit.push(v) } else { f.haproxy.push(v) };
            pick(&mut m.rps, r.requests_per_s);
            pick(&mut m.per_core, core);
            pick(&mut m.user, per_request_us(used.user_s));
            pick(&mut m.kernel, per_request_us(used.system_s));
        }
    }
    Ok(m)
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
    let why = format!(
        "each run with metrics gave {}, with --no-metrics {} (alternating, the agent restarted for each): \
         runs of the same setting lie that far apart",
        spread(&on, "req/s"),
        spread(&off, "req/s")
    );
    report.push(
        loss.target("≤ 3%", |_, m| m <= 3.0)
            .note(format!(
                "median of {} runs each: {with:.0} req/s with metrics, {without:.0} req/s with --no-metrics; access logs off",
                plan.reps
            ))
            .why(why),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(metric: &str, ambit: &[f64], haproxy: &[f64]) -> Figure {
        let mut f = Figure::new(SCENARIO, metric, "µs", Better::Lower);
        f.ambit = ambit.to_vec();
        f.haproxy = haproxy.to_vec();
        f
    }

    #[test]
    fn the_two_core_why_says_how_each_proxy_changed_from_one_core() {
        let one = (figure(USER_METRIC, &[8.0, 8.6, 9.0], &[6.1, 6.0, 6.2]), figure(KERNEL_METRIC, &[15.5], &[16.1]));
        let two = (figure(USER_METRIC, &[11.7], &[6.0]), figure(KERNEL_METRIC, &[17.0], &[13.7]));
        let why = growth_why((&one.0, &one.1), (&two.0, &two.1));
        assert_eq!(
            why,
            "from one core to two, Ambit's CPU per request changed by +3.1 µs in user space and +1.5 µs in the kernel, \
             HAProxy's by -0.1 and -2.4 µs"
        );
        let mut report = Report::default();
        assert!(find(&report, USER_METRIC).is_none());
        report.push(one.0.clone());
        assert_eq!(find(&report, USER_METRIC).map(|f| f.ambit.len()), Some(3));
    }
}
