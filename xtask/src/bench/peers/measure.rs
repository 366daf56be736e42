//! The peer scenarios, run the same way against every system: the same load
//! generators from a client pod on node 1 (pinned to node 1's core), the same counts,
//! and CPU time and memory summed over the system's proxies on both nodes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ambit_e2e::Pod;
use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::super::loadgen::{ambit_load_in, h2load_in};
use super::super::procs;
use super::super::profile::Profile;
use super::super::report::Better;
use super::super::Plan;
use super::table::{PeerFigure, System};
use super::usage::{Handover, RestartRun, Sampler, Usage};

pub const THROUGHPUT: &str = "P1 HTTP/1.1 keep-alive, h2load -c 64";
pub const CONNECT: &str = "P3 new connection per request";
pub const TCP: &str = "P4 bulk TCP, one connection";
pub const MEMORY: &str = "P5 memory, idle connections";
pub const RESTART: &str = "P6 restart of node 1's proxy under load";
/// The fixed rates of scenario P2, requests per second.
pub const RATES: [u64; 2] = [1_000, 5_000];
/// Keep-alive connections of the fixed-rate runs.
const RATE_CONNECTIONS: &str = "64";
/// The restart scenario's load: keep-alive and new-connection requests per second.
pub const RESTART_RATES: (u64, u64) = (500, 100);
/// When the restart starts, after the load did.
const RESTART_AFTER: Duration = Duration::from_secs(3);

pub fn rate_scenario(rate: u64) -> String {
    format!("P2 fixed rate {}k req/s", rate / 1000)
}

/// One system as the client sees it.
#[derive(Clone)]
pub struct Subject {
    pub system: System,
    pub client: Pod,
    /// The core of the client's node, where the load generator runs.
    pub cpu: usize,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    /// The proxies' pids on both nodes (empty for direct).
    pub proxies: Vec<i32>,
}

/// What the scenarios need besides the subject.
pub struct Ctx<'a> {
    pub load_bin: &'a Path,
    pub plan: &'a Plan,
}

/// The figures collected so far, what explains them, and what failed.
#[derive(Default)]
pub struct Figures {
    pub list: Vec<PeerFigure>,
    pub usage: Usage,
    pub failures: Vec<(String, String)>,
}

impl Figures {
    pub fn record(&mut self, scenario: &str, metric: &str, unit: &str, better: Better, system: System, value: f64) {
        let i = match self.list.iter().position(|f| f.scenario == scenario && f.metric == metric) {
            Some(i) => i,
            None => {
                self.list.push(PeerFigure::new(scenario, metric, unit, better));
                self.list.len() - 1
            }
        };
        self.list[i].push(system, value);
    }

    fn fail(&mut self, system: System, scenario: &str, e: anyhow::Error) {
        println!("    {} / {scenario}: failed: {e:#}", system.label());
        self.failures.push((format!("{scenario} ({})", system.label()), format!("{e:#}")));
    }
}

impl Subject {
    fn load(&self, ctx: &Ctx, args: &[&str]) -> Result<Value> {
        ambit_load_in(&self.client, self.cpu, ctx.load_bin, args)
    }

    /// Spawns ambit-load in the client pod (stdin, stdout and stderr piped).
    fn spawn_load(&self, ctx: &Ctx, args: &[&str], limit_secs: u64) -> Result<Child> {
        self.client
            .command("timeout")
            .args(["--signal=KILL", &format!("{limit_secs}s"), "taskset", "-c", &self.cpu.to_string()])
            .arg(ctx.load_bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning ambit-load in the client pod")
    }

    /// Calls until a short burst succeeds whole (first calls may wait for certificates,
    /// workloads, pooled tunnels).
    pub fn warm_up(&self, ctx: &Ctx) -> Result<()> {
        let addr = self.http.to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.load(ctx, &["rate", "--addr", &addr, "--rate", "200", "--requests", "200", "--connections", "8"]);
            match v {
                Ok(v) if v["errors"].as_u64() == Some(0) && v["timed_out"] == false => return Ok(()),
                other if Instant::now() > deadline => bail!("{}: warm-up calls to {addr} still fail: {other:?}", self.system.label()),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

fn throughput(s: &Subject, ctx: &Ctx, figs: &mut Figures) -> Result<()> {
    let url = format!("http://{}/", s.http);
    let requests = ctx.plan.requests / 2;
    // With AMBIT_BENCH_PERF=DIR: a perf profile of the proxies during this run.
    let profile = if s.proxies.is_empty() { None } else { Some(Profile::start(&format!("peers-{:?}", s.system), &s.proxies)?) };
    let sampler = Sampler::start(&s.proxies)?;
    let r = h2load_in(&s.client, s.cpu, &url, requests, 64, &["--h1"]);
    let sampled = r.as_ref().map_or(0, |r| r.succeeded);
    let used = sampler.finish(sampled)?;
    if let Some(p) = profile {
        p.stop()?;
    }
    let r = r?;
    if r.failed > 0 || r.succeeded == 0 {
        bail!("{url}: {} of {requests} requests failed", r.failed);
    }
    figs.record(THROUGHPUT, "throughput", "req/s", Better::Higher, s.system, r.requests_per_s);
    if !s.proxies.is_empty() {
        let cpu = used.cpu_seconds() / r.succeeded as f64 * 1e6;
        figs.record(THROUGHPUT, "proxies' CPU per request, both nodes", "µs", Better::Lower, s.system, cpu);
        figs.usage.record(THROUGHPUT, s.system, used);
    }
    Ok(())
}

fn fixed_rate(s: &Subject, ctx: &Ctx, rate: u64, figs: &mut Figures) -> Result<()> {
    let addr = s.http.to_string();
    let requests = rate * ctx.plan.rate_secs;
    let (r, n) = (rate.to_string(), requests.to_string());
    let sampler = Sampler::start(&s.proxies)?;
    let v = s.load(ctx, &["rate", "--addr", &addr, "--rate", &r, "--requests", &n, "--connections", RATE_CONNECTIONS])?;
    let used = sampler.finish(requests)?;
    if v["errors"].as_u64() != Some(0) || v["timed_out"] != false {
        bail!("{addr} at {rate}/s: {v}");
    }
    let scenario = rate_scenario(rate);
    for (metric, key) in [("latency p50", "p50_us"), ("latency p99", "p99_us"), ("latency p99.9", "p999_us")] {
        figs.record(&scenario, metric, "µs", Better::Lower, s.system, v["latency"][key].as_f64().unwrap_or(f64::NAN));
    }
    if !s.proxies.is_empty() {
        let cpu = used.cpu_seconds() / requests as f64 * 1e6;
        figs.record(&scenario, "proxies' CPU per request, both nodes", "µs", Better::Lower, s.system, cpu);
        figs.usage.record(&scenario, s.system, used);
    }
    Ok(())
}

fn connect(s: &Subject, ctx: &Ctx, figs: &mut Figures) -> Result<()> {
    let addr = s.http.to_string();
    let count = (ctx.plan.connections / 2).to_string();
    let v = s.load(ctx, &["connect", "--addr", &addr, "--count", &count, "--http"])?;
    if v["errors"].as_u64() != Some(0) {
        bail!("{count} connections to {addr}: {v}");
    }
    let get = |a: &str, b: &str| v[a][b].as_f64().unwrap_or(f64::NAN);
    figs.record(CONNECT, "connection rate (conn+request+close)", "conn/s", Better::Higher, s.system, v["rate_per_s"].as_f64().unwrap_or(f64::NAN));
    figs.record(CONNECT, "conn+request latency p50", "µs", Better::Lower, s.system, get("total", "p50_us"));
    figs.record(CONNECT, "conn+request latency p99", "µs", Better::Lower, s.system, get("total", "p99_us"));
    Ok(())
}

fn bulk_tcp(s: &Subject, ctx: &Ctx, figs: &mut Figures) -> Result<()> {
    let addr = s.tcp.to_string();
    let v = s.load(ctx, &["tcp", "--addr", &addr, "--bytes", &(ctx.plan.tcp_bytes / 2).to_string()])?;
    figs.record(TCP, "echo throughput (each way)", "Gbit/s", Better::Higher, s.system, v["gbit_per_s"].as_f64().unwrap_or(f64::NAN));
    Ok(())
}

/// RSS growth of the proxies (both nodes) while `idle_connections` idle keep-alive
/// connections, one request each, are open.
fn memory(s: &Subject, ctx: &Ctx, figs: &mut Figures) -> Result<()> {
    let n = ctx.plan.idle_connections;
    let per_node = |s: &Subject| s.proxies.iter().map(|&p| procs::rss_bytes(p)).collect::<Result<Vec<u64>>>();
    // Once the previous scenario's freed memory has gone back (Ambit's jemalloc
    // returns it over about a second): else that return counts against this one.
    let before = procs::settled_rss(&s.proxies)?;
    let addr = s.http.to_string();
    let mut child = s.spawn_load(ctx, &["idle", "--addr", &addr, "--connections", &n.to_string(), "--hold-secs", "60"], 90)?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line)?;
    let opened = ambit_e2e::load_output::idle_opened(&line).unwrap_or(0);
    // The last connections' upstream sides settle on node 2, and the connections are
    // idle: Ambit parks a keep-alive connection a second or so after its last request.
    std::thread::sleep(Duration::from_secs(3));
    let during = per_node(s);
    drop(child.stdin.take());
    let _ = child.wait_with_output();
    let during = during?;
    if opened < n {
        bail!("only {opened} of {n} idle connections to {addr} opened ({line:?})");
    }
    let (total_before, total) = (before.iter().sum::<u64>() as f64, during.iter().sum::<u64>() as f64);
    figs.record(MEMORY, "proxies' RSS, both nodes, connections open", "MiB", Better::Lower, s.system, total / (1 << 20) as f64);
    figs.record(MEMORY, "proxies' memory per idle connection", "bytes", Better::Lower, s.system, (total - total_before) / n as f64);
    // The split per node (proxies listed node 1 first; HAProxy has only node 1's).
    for (i, (b, d)) in before.iter().zip(&during).enumerate() {
        let metric = format!("of which node {}'s proxy", i + 1);
        figs.record(MEMORY, &metric, "bytes", Better::Lower, s.system, (*d as f64 - *b as f64) / n as f64);
    }
    Ok(())
}

/// Restarts node 1's proxy (`restart`) while `ambit-load steady` runs a fixed-rate load.
fn restart(s: &Subject, ctx: &Ctx, restart: &mut dyn FnMut() -> Result<Handover>, figs: &mut Figures) -> Result<()> {
    // 14 s with --quick, 20 s otherwise: the old proxy's drain ends well before the load.
    let secs = 10 + 2 * ctx.plan.rate_secs;
    let addr = s.http.to_string();
    let (ka, nc) = (RESTART_RATES.0.to_string(), RESTART_RATES.1.to_string());
    let args = ["steady", "--addr", &addr, "--keepalive-rate", &ka, "--keepalive-conns", "16", "--new-conn-rate", &nc];
    let secs_s = secs.to_string();
    let mut all = args.to_vec();
    all.extend(["--secs", &secs_s, "--timeout-ms", "5000"]);
    let started = Instant::now();
    let child = s.spawn_load(ctx, &all, secs + 40)?;
    std::thread::sleep(RESTART_AFTER);
    let began_s = started.elapsed().as_secs_f64();
    let handover = restart();
    let out = child.wait_with_output().context("waiting for ambit-load steady")?;
    let handover = handover.context("restarting node 1's proxy")?;
    if !out.status.success() {
        bail!("ambit-load steady failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("ambit-load steady printed no JSON")?;
    let get = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    figs.record(RESTART, "failed requests", "requests", Better::Lower, s.system, get("errors"));
    figs.record(RESTART, "longest gap between successes", "ms", Better::Lower, s.system, get("longest_gap_ms"));
    figs.record(RESTART, "requests retried on a new connection", "requests", Better::Lower, s.system, get("retried"));
    figs.record(RESTART, "requests served", "requests", Better::Higher, s.system, get("ok"));
    if let Some(samples) = v["error_samples"].as_array().filter(|a| !a.is_empty()) {
        let first: Vec<String> = samples.iter().take(3).map(|x| x.to_string()).collect();
        println!("    {}: {} failed requests, e.g. {}", s.system.label(), get("errors"), first.join("; "));
    }
    figs.usage.restart(s.system, restart_run(&v, handover, began_s));
    Ok(())
}

/// What `ambit-load steady`'s output `v` says about the restart, with its timing.
fn restart_run(v: &Value, handover: Handover, began_s: f64) -> RestartRun {
    let gaps_ms = v["kinds"]
        .as_object()
        .map(|kinds| kinds.iter().map(|(k, x)| (k.clone(), x["longest_gap_ms"].as_f64().unwrap_or(f64::NAN))).collect())
        .unwrap_or_default();
    let error_at_s = v["error_samples"].as_array().map(|a| a.iter().filter_map(|x| x["at_s"].as_f64()).collect()).unwrap_or_default();
    RestartRun { handover, began_s, errors: v["errors"].as_u64(), gaps_ms, error_at_s }
}

/// Runs every scenario on `s`; `restart_proxy` restarts node 1's proxy (None: the
/// system has none to restart, or no memory figure, like direct).
pub fn run_all(s: &Subject, ctx: &Ctx, figs: &mut Figures, restart_proxy: Option<&mut dyn FnMut() -> Result<Handover>>) {
    type Step<'a> = (&'a str, Box<dyn Fn(&Subject, &Ctx, &mut Figures) -> Result<()>>);
    let mut steps: Vec<Step> = vec![(THROUGHPUT, Box::new(throughput))];
    for rate in RATES {
        steps.push(("P2 fixed rate", Box::new(move |s, c, f| fixed_rate(s, c, rate, f))));
    }
    steps.push((CONNECT, Box::new(connect)));
    steps.push((TCP, Box::new(bulk_tcp)));
    if !s.proxies.is_empty() {
        steps.push((MEMORY, Box::new(memory)));
    }
    for (name, step) in steps {
        if let Err(e) = step(s, ctx, figs) {
            figs.fail(s.system, name, e);
        }
    }
    if let Some(r) = restart_proxy {
        if let Err(e) = restart(s, ctx, r, figs) {
            figs.fail(s.system, RESTART, e);
        }
    }
}
