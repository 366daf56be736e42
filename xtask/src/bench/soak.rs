//! `cargo xtask bench --soak`: mixed traffic for a long time (30 minutes by default)
//! with pod and route churn, watching the agent's memory and counting errors.
//!
//! The client pod runs `ambit-load steady` (HTTP/1.1 keep-alive, a new connection per
//! request, h2c, TCP echo, each at a fixed moderate rate) through the bench Services,
//! whose HTTPRoutes match every request. Every [`CHURN_EVERY`]: the HTTPRoutes are
//! rewritten (a new header value), the `churn` Deployment is scaled (1 → 2 → 3 → 1 …)
//! and an ad-hoc enrolled pod is replaced by a new one. The `churn` pods sit behind
//! their own Service and get no traffic: the bed removes a pod's endpoints and kills it
//! in one step, where a kubelet first takes it out of its endpoints, so traffic to them
//! would measure the bed, not Ambit. Every [`SAMPLE_EVERY`] the agent's RSS is read.
//!
//! The report compares the median RSS of a window right after warm-up with that of
//! the last window (target: at most 10 % growth) and the load's failed requests
//! (target: 0); `target/bench/soak.{md,json}`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ambit_e2e::PodSpec;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::procs;
use super::report::median;
use super::world::{World, LOAD_CPU, MATCH_HEADER};

/// How often routes are rewritten and pods churned.
const CHURN_EVERY: Duration = Duration::from_secs(3);
/// How often the agent's RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Requests (or exchanges) per second of each kind: keep-alive, new connection, h2c, TCP.
const RATES: [(&str, u64); 4] = [("keepalive", 100), ("new-conn", 20), ("h2c", 100), ("tcp", 10)];
/// Largest RSS growth after warm-up that meets the target, in percent.
const GROWTH_TARGET_PCT: f64 = 10.0;

const CHURN_YAML: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: churn, namespace: bench}
spec:
  selector: {app: churn}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
"#;

fn churn_deployment(replicas: usize) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: churn, namespace: bench}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: churn}}}}
  template:
    metadata: {{labels: {{app: churn}}}}
    spec: {{containers: [{{name: echo, image: echo, ports: [{{containerPort: 8080}}]}}]}}
"#
    )
}

/// When the warm-up ends and how wide the compared RSS windows are.
struct Phases {
    warm_up: Duration,
    window: Duration,
}

impl Phases {
    fn for_run(total: Duration) -> Phases {
        let warm_up = (total / 10).clamp(Duration::from_secs(30), total / 2);
        let window = (total / 10).clamp(Duration::from_secs(10), Duration::from_secs(60));
        Phases { warm_up, window }
    }
}

/// One RSS reading, seconds since the load started.
#[derive(Clone, Copy)]
struct Sample {
    at: f64,
    rss: u64,
}

pub fn run(world: &mut World, minutes: u64, out_dir: &Path) -> Result<()> {
    if minutes == 0 {
        bail!("--soak-minutes must be positive");
    }
    let total = Duration::from_secs(minutes * 60);
    world.bed.apply_yaml(CHURN_YAML)?;
    let mut load = spawn_load(world, total)?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let (mut churns, mut next_churn, mut next_sample) = (0usize, started, started);
    let mut churn_errors = Vec::new();
    while load.try_wait()?.is_none() {
        let now = Instant::now();
        if now >= next_sample {
            samples.push(Sample { at: started.elapsed().as_secs_f64(), rss: procs::rss_bytes(world.agent_pid)? });
            next_sample += SAMPLE_EVERY;
        }
        if now >= next_churn && started.elapsed() < total {
            churns += 1;
            if let Err(e) = churn(world, churns) {
                churn_errors.push(format!("churn {churns}: {e:#}"));
            }
            next_churn += CHURN_EVERY;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = load.wait_with_output()?;
    if !out.status.success() {
        bail!("ambit-load steady failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let load: Value = serde_json::from_slice(&out.stdout).context("ambit-load steady printed no JSON")?;
    let report = summarise(minutes, &samples, &load, churns, &churn_errors)?;
    write(&report, out_dir)
}

/// Starts the load in the client pod (pinned to the load CPU, bounded in time).
fn spawn_load(world: &World, total: Duration) -> Result<std::process::Child> {
    let addr = |name: &str, port: u16| world.service(name, port).map(|a| a.to_string());
    let (http, h2c, tcp) = (addr("echo", 80)?, addr("echo-h2", 80)?, addr("echo-tcp", 9000)?);
    let load = world.load_bin.to_str().context("non-UTF-8 path")?.to_owned();
    let secs = total.as_secs().to_string();
    let mut c = world.client.command("timeout");
    c.args(["--signal=KILL", &format!("{}s", total.as_secs() + 120), "taskset", "-c", &LOAD_CPU.to_string(), &load]);
    c.args(["steady", "--addr", &http, "--header", MATCH_HEADER, "--h2c-addr", &h2c, "--tcp-addr", &tcp, "--secs", &secs]);
    for (kind, rate) in RATES {
        c.arg(format!("--{kind}-rate")).arg(rate.to_string());
    }
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().context("spawning ambit-load steady in the client pod")
}

/// One round of churn: new route generation, the Deployment rescaled, an ad-hoc pod replaced.
fn churn(world: &World, round: usize) -> Result<()> {
    world.set_routes(&format!("soak-{round}"))?;
    world.bed.apply_yaml(&churn_deployment(1 + round % 3))?;
    world.bed.add_pod(PodSpec::new("bench", format!("churn-adhoc-{round}")).label("app", "churn"))?;
    if round > 1 {
        world.bed.remove_pod("bench", &format!("churn-adhoc-{}", round - 1))?;
    }
    for pod in world.bed.pods_matching("bench", &[("app", "churn")]) {
        for pid in procs::cgroup_pids(&pod.cgroup) {
            let _ = procs::pin(pid, LOAD_CPU);
        }
    }
    Ok(())
}

fn window_median(samples: &[Sample], from: f64, to: f64) -> Option<f64> {
    let v: Vec<f64> = samples.iter().filter(|s| s.at >= from && s.at < to).map(|s| s.rss as f64).collect();
    median(&v)
}

fn summarise(minutes: u64, samples: &[Sample], load: &Value, churns: usize, churn_errors: &[String]) -> Result<Value> {
    let total = Duration::from_secs(minutes * 60);
    let phases = Phases::for_run(total);
    let (warm, win, end) = (phases.warm_up.as_secs_f64(), phases.window.as_secs_f64(), total.as_secs_f64());
    let after_warm_up = window_median(samples, warm, warm + win).context("no RSS sample right after warm-up")?;
    let at_end = window_median(samples, end - win, end + 1.0).context("no RSS sample at the end")?;
    let growth = (at_end - after_warm_up) / after_warm_up * 100.0;
    let peak = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let errors = load["errors"].as_u64().unwrap_or(u64::MAX);
    let mib = |b: f64| b / (1 << 20) as f64;
    Ok(json!({
        "minutes": minutes,
        "warm_up_s": warm, "window_s": win,
        "rss_after_warm_up_mib": mib(after_warm_up), "rss_at_end_mib": mib(at_end), "rss_peak_mib": mib(peak as f64),
        "rss_growth_pct": growth, "rss_target_met": growth <= GROWTH_TARGET_PCT,
        "errors": errors, "errors_target_met": errors == 0,
        "requests_ok": load["ok"], "retried": load["retried"], "longest_gap_ms": load["longest_gap_ms"],
        "kinds": load["kinds"], "error_samples": load["error_samples"],
        "churn_rounds": churns, "churn_errors": churn_errors,
        "rates_per_s": RATES.iter().map(|(k, r)| (k.to_string(), json!(r))).collect::<serde_json::Map<_, _>>(),
        "rss_samples": samples.iter().map(|s| json!([s.at, s.rss])).collect::<Vec<_>>(),
    }))
}

fn markdown(r: &Value) -> String {
    let mut md = String::new();
    let met = |ok: &Value| if ok.as_bool() == Some(true) { "met" } else { "MISSED" };
    let _ = writeln!(md, "# Ambit soak: {} minutes of mixed traffic with pod and route churn\n", r["minutes"]);
    let _ = writeln!(md, "| figure | value | target |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| RSS after warm-up ({:.0} s; median of a {:.0} s window) | {:.1} MiB | |",
        r["warm_up_s"].as_f64().unwrap_or(0.0),
        r["window_s"].as_f64().unwrap_or(0.0),
        r["rss_after_warm_up_mib"].as_f64().unwrap_or(f64::NAN)
    );
    let _ = writeln!(md, "| RSS at the end (median of the last window) | {:.1} MiB | |", r["rss_at_end_mib"].as_f64().unwrap_or(f64::NAN));
    let _ = writeln!(
        md,
        "| RSS growth after warm-up | {:+.1} % | ≤ {GROWTH_TARGET_PCT} %: {} |",
        r["rss_growth_pct"].as_f64().unwrap_or(f64::NAN),
        met(&r["rss_target_met"])
    );
    let _ = writeln!(md, "| RSS peak | {:.1} MiB | |", r["rss_peak_mib"].as_f64().unwrap_or(f64::NAN));
    let _ = writeln!(md, "| failed requests | {} | 0: {} |", r["errors"], met(&r["errors_target_met"]));
    let _ = writeln!(md, "| successful requests | {} | |", r["requests_ok"]);
    let _ = writeln!(md, "| retried on a connection the server had closed | {} | |", r["retried"]);
    let _ = writeln!(md, "| longest gap between successes of one kind | {:.1} ms | |", r["longest_gap_ms"].as_f64().unwrap_or(f64::NAN));
    let _ = writeln!(md, "| churn rounds (routes rewritten, Deployment rescaled, pod replaced) | {} | |", r["churn_rounds"]);
    let _ = writeln!(md, "\nRates per second: {}. Per kind:\n", r["rates_per_s"]);
    let _ = writeln!(md, "| kind | ok | errors | retried | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|---|---|");
    for (kind, k) in r["kinds"].as_object().into_iter().flatten() {
        let l = &k["latency"];
        let _ = writeln!(md, "| {kind} | {} | {} | {} | {} | {} | {} |", k["ok"], k["errors"], k["retried"], l["p50_us"], l["p99_us"], l["max_us"]);
    }
    for (title, key) in [("Failed requests (first ones)", "error_samples"), ("Churn steps that failed", "churn_errors")] {
        if let Some(list) = r[key].as_array().filter(|l| !l.is_empty()) {
            let _ = writeln!(md, "\n{title}:\n");
            for e in list {
                let _ = writeln!(md, "- {e}");
            }
        }
    }
    md
}

fn write(report: &Value, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let md = markdown(report);
    std::fs::write(dir.join("soak.md"), &md)?;
    std::fs::write(dir.join("soak.json"), serde_json::to_vec_pretty(report)?)?;
    println!("\n{md}");
    println!("written: {} and {}", dir.join("soak.md").display(), dir.join("soak.json").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_scale_with_the_run_and_leave_room_for_two_windows() {
        let short = Phases::for_run(Duration::from_secs(120));
        assert_eq!((short.warm_up, short.window), (Duration::from_secs(30), Duration::from_secs(12)));
        let long = Phases::for_run(Duration::from_secs(1800));
        assert_eq!((long.warm_up, long.window), (Duration::from_secs(180), Duration::from_secs(60)));
    }

    #[test]
    fn growth_compares_the_window_after_warm_up_with_the_last_one() {
        let samples: Vec<Sample> = (0..60).map(|i| Sample { at: i as f64 * 2.0, rss: if i < 15 { 50 } else { 100 + i / 50 } }).collect();
        let load = json!({"errors": 0, "ok": 10});
        let r = summarise(2, &samples, &load, 3, &[]).unwrap();
        assert_eq!(r["rss_after_warm_up_mib"].as_f64().unwrap() * (1 << 20) as f64, 100.0);
        assert!((r["rss_growth_pct"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{r}");
        assert_eq!(r["rss_target_met"], true);
        assert_eq!(r["errors_target_met"], true);
    }
}
