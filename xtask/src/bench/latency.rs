//! Scenario 2: fixed rates (1k, 2k, 5k and 10k requests/s), open loop without
//! coordinated omission (ambit-load rate), latency p50/p99/p99.9, and the proxy's CPU
//! time. The points also go to the latency-against-rate plot.

use anyhow::{bail, Result};
use serde_json::Value;

use super::loadgen::ambit_load;
use super::plot::{LatencyPoint, System};
use super::procs::{cpu_use, CpuUse};
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
    /// The proxy's CPU use over the run (zero for direct).
    used: CpuUse,
    requests: u64,
}

impl Run {
    /// Times the proxy's threads went to sleep (and were woken again) per request.
    fn wakeups_per_request(&self) -> f64 {
        self.used.voluntary_switches as f64 / self.requests as f64
    }

    /// The proxy's CPU per wake-up, µs.
    fn cpu_per_wakeup_us(&self) -> f64 {
        (self.used.user_s + self.used.system_s) / self.used.voluntary_switches.max(1) as f64 * 1e6
    }

    /// The proxy's (user, kernel) CPU per wake-up, µs.
    fn split_per_wakeup_us(&self) -> (f64, f64) {
        let per = |s: f64| s / self.used.voluntary_switches.max(1) as f64 * 1e6;
        (per(self.used.user_s), per(self.used.system_s))
    }

    /// The proxy's CPU per request, µs.
    fn cpu_per_request_us(&self) -> f64 {
        (self.used.user_s + self.used.system_s) / self.requests.max(1) as f64 * 1e6
    }

    /// How long the proxy's threads waited for a CPU per wake-up, µs (a mean: the
    /// scheduler keeps no percentiles).
    fn run_delay_per_wakeup_us(&self) -> f64 {
        self.used.run_delay_s / self.used.voluntary_switches.max(1) as f64 * 1e6
    }
}

fn one(world: &World, addr: &str, rate: u64, requests: u64, pid: Option<i32>) -> Result<Run> {
    let before = pid.map(cpu_use).transpose()?;
    let (r, n) = (rate.to_string(), requests.to_string());
    let v: Value = ambit_load(
        world,
        &["rate", "--addr", addr, "--header", MATCH_HEADER, "--rate", &r, "--requests", &n, "--connections", "64"],
    )?;
    if v["errors"].as_u64() != Some(0) || v["timed_out"] == true {
        bail!("{addr} at {rate}/s: {v}");
    }
    let used = match (pid, before) {
        (Some(p), Some(b)) => cpu_use(p)? - b,
        _ => CpuUse::default(),
    };
    let cpu = if pid.is_some() { used.user_s + used.system_s } else { f64::NAN };
    let elapsed = v["elapsed_s"].as_f64().unwrap_or(f64::NAN);
    let l = &v["latency"];
    let get = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
    Ok(Run {
        p50: get("p50_us"),
        p99: get("p99_us"),
        p999: get("p999_us"),
        cpu_per_1k: cpu / (requests as f64 / 1000.0) * 1000.0,
        cores_per_krps: cpu / elapsed / (v["achieved_rps"].as_f64().unwrap_or(f64::NAN) / 1000.0),
        used,
        requests,
    })
}

/// Issue 12's latency targets at one rate.
#[derive(Clone, Copy)]
enum Targets {
    /// A rate between the targets': its points feed the plot.
    None,
    /// The p99 added over direct at most this many µs and at most HAProxy's.
    AddedP99(f64),
    /// The p50 within this factor of HAProxy's (the proxy keeps up).
    P50OfHaproxy(f64),
}

/// The fixed rates and their targets; where there are targets, the proxy's cores per
/// 1,000 req/s have one too.
const RATES: [(u64, Targets); 4] =
    [(1_000, Targets::AddedP99(150.0)), (2_000, Targets::None), (5_000, Targets::None), (10_000, Targets::P50OfHaproxy(1.2))];

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
    for (rate, targets) in RATES {
        let scenario = format!("2 fixed rate {}k req/s", rate / 1000);
        let requests = rate * plan.rate_secs;
        let mut p50 = Figure::new(&scenario, "latency p50", "µs", Better::Lower);
        let mut p99 = Figure::new(&scenario, "latency p99", "µs", Better::Lower);
        let mut p999 = Figure::new(&scenario, "latency p99.9", "µs", Better::Lower);
        let mut cpu = Figure::new(&scenario, "proxy CPU per 1,000 requests", "ms", Better::Lower);
        let mut cores = Figure::new(&scenario, "proxy cores per 1,000 req/s", "cores", Better::Lower);
        let mut runs = Vec::new();
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
            runs.push((a, h));
        }
        plot.extend(points(rate, [&p50, &p99, &p999]));
        let direct_p99 = median(&p99.direct).unwrap_or(f64::NAN);
        let mut added = Figure::new(&scenario, "added p99 over direct", "µs", Better::Lower);
        added.ambit = p99.ambit.iter().map(|x| x - direct_p99).collect();
        added.haproxy = p99.haproxy.iter().map(|x| x - direct_p99).collect();
        let added = added.note(
            "latency measured from each request's due time (open loop, no coordinated omission), ambit-load, 64 keep-alive connections",
        );
        let haproxy_added = median(&added.haproxy).unwrap_or(f64::NAN);
        let haproxy_p50 = median(&p50.haproxy).unwrap_or(f64::NAN);
        let (p50, added) = match targets {
            Targets::None => {
                // Their CPU figures add nothing to the targeted rates'.
                report.extend([p50, p99, p999, added]);
                continue;
            }
            Targets::AddedP99(max) => {
                let text = format!("≤ {max} µs and ≤ HAProxy's");
                let added = added.target(&text, move |_, m| m <= max && m <= haproxy_added);
                let p50_gap = median(&p50.ambit).unwrap_or(f64::NAN) - haproxy_p50;
                (p50, added.why(delay_why(&runs, haproxy_added, p50_gap)))
            }
            Targets::P50OfHaproxy(factor) => {
                let p50 = p50.target(&format!("≤ {factor}× HAProxy's"), move |_, m| m <= factor * haproxy_p50);
                (p50.why(busy_why(&runs, rate)), added)
            }
        };
        report.extend([p50, p99, p999, added]);
        report.push(cpu.note("utime+stime of the proxy process over the run"));
        let cores = cores.target("≤ 0.05 (ztunnel L4: 0.06, waypoint L7: 0.25)", |_, m| m <= 0.05);
        report.push(cores.why(wakeups_why(&runs)));
    }
    Ok(())
}

/// The median of `f` over the (Ambit, HAProxy) runs, for each.
fn medians(runs: &[(Run, Run)], f: impl Fn(&Run) -> f64) -> (f64, f64) {
    let pick = |i: usize| median(&runs.iter().map(|r| f(if i == 0 { &r.0 } else { &r.1 })).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    (pick(0), pick(1))
}

/// Why a proxy's CPU per request is higher at a low rate: each request wakes it.
fn wakeups_why(runs: &[(Run, Run)]) -> String {
    let (aw, hw) = medians(runs, Run::wakeups_per_request);
    let (ac, hc) = medians(runs, Run::cpu_per_wakeup_us);
    let (au, hu) = medians(runs, |r| r.split_per_wakeup_us().0);
    let (ak, hk) = medians(runs, |r| r.split_per_wakeup_us().1);
    format!(
        "Ambit's threads went to sleep and were woken {aw:.2} times per request, HAProxy's {hw:.2}; each wake-up cost \
         Ambit {ac:.1} µs of CPU ({au:.1} user, {ak:.1} kernel) and HAProxy {hc:.1} µs ({hu:.1} user, {hk:.1} kernel): \
         epoll, the socket calls of the requests it found and going back to sleep, on caches gone cold since the last \
         wake-up; at this rate few requests share a wake-up"
    )
}

/// What the added p99 is made of: the proxy's own CPU time on each request's path
/// (against HAProxy's, with the p50 gap beside it) and waiting for a CPU.
fn delay_why(runs: &[(Run, Run)], haproxy_added: f64, p50_gap: f64) -> String {
    let (ad, hd) = medians(runs, Run::run_delay_per_wakeup_us);
    let (ac, hc) = medians(runs, Run::cpu_per_request_us);
    format!(
        "HAProxy added {haproxy_added:.0} µs to the p99 on the same machine in the same run; each request cost Ambit \
         {ac:.0} µs of CPU at this rate and HAProxy {hc:.0} µs ({:+.0} µs, against a p50 {p50_gap:+.0} µs from HAProxy's): \
         the proxy's own processing on cold caches is on every request's path; after a wake-up Ambit's threads waited \
         {ad:.1} µs on average for a CPU (HAProxy's {hd:.1} µs), the scheduler's share of the tail",
        ac - hc
    )
}

/// Why requests queue at a high rate: how busy the proxy's CPU was, and its waits.
fn busy_why(runs: &[(Run, Run)], rate: u64) -> String {
    let busy = |r: &Run| r.cores_per_krps * rate as f64 / 1000.0 * 100.0;
    let (ab, hb) = medians(runs, busy);
    let (ad, hd) = medians(runs, Run::run_delay_per_wakeup_us);
    format!(
        "Ambit's CPU was {ab:.0}% busy and HAProxy's {hb:.0}%; after a wake-up Ambit's threads waited {ad:.1} µs on average \
         for a CPU (HAProxy's {hd:.1} µs): the closer to 100% busy, the longer requests queue"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of 1,000 requests with `user`/`kernel` CPU seconds over `switches` wake-ups.
    fn run(user: f64, kernel: f64, switches: u64) -> Run {
        let used = CpuUse { user_s: user, system_s: kernel, voluntary_switches: switches, run_s: 0.0, run_delay_s: 0.0005 };
        Run { p50: 0.0, p99: 0.0, p999: 0.0, cpu_per_1k: 0.0, cores_per_krps: 0.0, used, requests: 1_000 }
    }

    #[test]
    fn the_1k_whys_split_each_wake_up_and_compare_cpu_per_request() {
        let runs = [(run(0.030, 0.062, 2_050), run(0.020, 0.058, 2_030))];
        let why = wakeups_why(&runs);
        assert!(why.contains("woken 2.05 times per request, HAProxy's 2.03"), "{why}");
        assert!(why.contains("Ambit 44.9 µs of CPU (14.6 user, 30.2 kernel) and HAProxy 38.4 µs (9.9 user, 28.6 kernel)"), "{why}");
        let why = delay_why(&runs, 231.0, 13.0);
        assert!(why.contains("each request cost Ambit 92 µs of CPU at this rate and HAProxy 78 µs (+14 µs, against a p50 +13 µs"), "{why}");
        assert!(why.contains("waited 0.2 µs on average for a CPU (HAProxy's 0.2 µs)"), "{why}");
    }
}
