//! Running the load generators inside the client pod, pinned to the load CPU and
//! bounded in time: `ambit-load` (ours, JSON out) and `h2load` (nghttp2, text out).

use std::path::Path;
use std::process::Stdio;

use ambit_e2e::Pod;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::world::{cpu_list, World};

/// Wall-clock bound of any one load run, on top of its request bound.
pub const RUN_LIMIT_SECS: u64 = 90;

/// A command in the client pod, pinned to the load CPUs of the world's phase.
fn pod_command(world: &World, program: &str, args: &[&str]) -> std::process::Command {
    pod_command_on(&world.client, &cpu_list(world.cores.load_cpus()), program, args)
}

fn pod_command_in(pod: &Pod, cpu: usize, program: &str, args: &[&str]) -> std::process::Command {
    pod_command_on(pod, &cpu.to_string(), program, args)
}

/// `program args...` in `pod`, pinned to `cpus` (a taskset list), bounded in time.
fn pod_command_on(pod: &Pod, cpus: &str, program: &str, args: &[&str]) -> std::process::Command {
    let mut c = pod.command("timeout");
    c.args(["--signal=KILL", &format!("{RUN_LIMIT_SECS}s"), "taskset", "-c", cpus, program]);
    c.args(args);
    c
}

/// Runs `ambit-load args...` in the client pod; its JSON report.
pub fn ambit_load(world: &World, args: &[&str]) -> Result<Value> {
    run_ambit_load(pod_command(world, world.load_bin.to_str().context("non-UTF-8 path")?, args), args)
}

/// Runs `load_bin args...` (ambit-load) in `pod`, pinned to `cpu`; its JSON report.
pub fn ambit_load_in(pod: &Pod, cpu: usize, load_bin: &Path, args: &[&str]) -> Result<Value> {
    let load = load_bin.to_str().context("non-UTF-8 path")?.to_owned();
    run_ambit_load(pod_command_in(pod, cpu, &load, args), args)
}

fn run_ambit_load(mut command: std::process::Command, args: &[&str]) -> Result<Value> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .context("running ambit-load in the client pod")?;
    if !out.status.success() {
        bail!("ambit-load {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("ambit-load printed {:?}", String::from_utf8_lossy(&out.stdout)))
}

/// Spawns `ambit-load args...` in the client pod with piped stdin/stderr (for `idle`).
pub fn spawn_ambit_load(world: &World, args: &[&str]) -> Result<std::process::Child> {
    let load = world.load_bin.to_str().context("non-UTF-8 path")?.to_owned();
    pod_command(world, &load, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning ambit-load in the client pod")
}

/// What h2load reported.
#[derive(Debug, Clone, Copy)]
pub struct H2loadResult {
    pub requests_per_s: f64,
    pub succeeded: u64,
    pub failed: u64,
}

/// Runs h2load (`extra` selects --h1 or h2c streams) against `url` with `requests`.
/// One h2load thread per load CPU of the world's phase.
pub fn h2load(world: &World, url: &str, requests: u64, clients: u32, extra: &[&str]) -> Result<H2loadResult> {
    let cpus = world.cores.load_cpus();
    h2load_on(&world.client, &cpu_list(cpus), cpus.len(), url, requests, clients, extra)
}

/// Runs h2load in `pod`, one thread pinned to `cpu` (see [`h2load`]).
pub fn h2load_in(pod: &Pod, cpu: usize, url: &str, requests: u64, clients: u32, extra: &[&str]) -> Result<H2loadResult> {
    h2load_on(pod, &cpu.to_string(), 1, url, requests, clients, extra)
}

fn h2load_on(pod: &Pod, cpus: &str, threads: usize, url: &str, requests: u64, clients: u32, extra: &[&str]) -> Result<H2loadResult> {
    let (n, c, t) = (requests.to_string(), clients.to_string(), threads.to_string());
    let mut args = vec!["-n", &n, "-c", &c, "-t", &t, "-H", "x-bench: yes"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = pod_command_on(pod, cpus, "h2load", &args).stdin(Stdio::null()).output().context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("h2load {url} failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    parse_h2load(&text).with_context(|| format!("unexpected h2load output:\n{text}"))
}

/// Parses "finished in 1.00s, 12345.67 req/s, ..." and "requests: N total, N started, N done, N succeeded, N failed, ...".
fn parse_h2load(text: &str) -> Option<H2loadResult> {
    let finished = text.lines().find(|l| l.starts_with("finished in"))?;
    let rps: f64 = finished.split(", ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    let requests = text.lines().find(|l| l.starts_with("requests:"))?;
    let field = |name: &str| -> Option<u64> {
        requests.split(", ").find(|p| p.trim_end().ends_with(name))?.split_whitespace().rev().nth(1)?.parse().ok()
    };
    Some(H2loadResult { requests_per_s: rps, succeeded: field("succeeded")?, failed: field("failed")? })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_h2load_summary() {
        let text = "starting benchmark...\n\nfinished in 1.53s, 6535.95 req/s, 2.10MB/s\n\
                    requests: 10000 total, 10000 started, 10000 done, 9990 succeeded, 10 failed, 10 errored, 0 timeout\n";
        let r = super::parse_h2load(text).unwrap();
        assert_eq!(r.requests_per_s, 6535.95);
        assert_eq!(r.succeeded, 9990);
        assert_eq!(r.failed, 10);
    }
}
