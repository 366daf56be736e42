//! `cargo xtask bench`: Ambit's cost, measured in the test bed against a direct
//! pod-to-pod connection and against HAProxy doing the same routing, in one run.
//!
//! One module per scenario; [`world`] sets up the bed, [`loadgen`] runs the load
//! generators in the client pod, [`procs`] pins processes and reads their CPU time and
//! memory, [`report`] writes `target/bench/report.{md,json}`. The README's
//! "Benchmarks" section explains each scenario and how to read the report.

mod authz;
mod authz_world;
mod change;
mod connect;
pub mod control_plane;
mod cross_node;
mod cross_world;
mod mesh_scale;
mod h2;
mod install;
mod latency;
mod loadgen;
mod memory;
mod peers;
mod plot;
mod procs;
mod profile;
mod report;
mod scale_cluster;
mod soak;
mod sysinfo;
mod tcp;
mod user_profile;
mod throughput;
mod world;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use report::{Better, Figure, Report};
use world::{World, LOAD_CPU, PROXY_CPU};

/// The open-file limit the bench gives itself and so the proxies and load generators
/// it starts (10,000 idle connections take two descriptors each in a proxy).
const NOFILE: u64 = 200_000;

#[derive(clap::Args)]
pub struct Args {
    /// A ~5-minute smoke run: one repetition, smaller counts.
    #[arg(long)]
    quick: bool,
    /// Repetitions of each measurement (default 3, or 1 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Run only the soak scenario: mixed traffic with pod and route churn, watching the
    /// agent's RSS and counting errors; writes target/bench/soak.{md,json}.
    #[arg(long)]
    soak: bool,
    /// How long the soak runs.
    #[arg(long, default_value_t = 30, requires = "soak")]
    soak_minutes: u64,
    /// Run only these parts (comma-separated); all but `peers` by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Run only the peer comparison (same as `--only peers`): Ambit, Istio's ztunnel
    /// (built once from ../shared/peers/ztunnel), HAProxy and direct on two nodes.
    #[arg(long, conflicts_with = "only")]
    peers: bool,
    /// Within the node part, run only these scenarios (comma-separated numbers 1-7; the
    /// metrics and two-core runs count as scenario 1); all by default. For investigating
    /// one figure: a report made this way is partial.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<u8>,
    /// Run this ambit-agent binary instead of the release build, for A/B runs (e.g. one
    /// built with `--no-default-features`: the system allocator instead of jemalloc).
    /// Its file name must contain `ambit-agent`.
    #[arg(long)]
    agent_bin: Option<PathBuf>,
}

/// The parts of a bench run, for `--only`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Scenarios 1-7: one node, Ambit vs direct vs HAProxy.
    Node,
    /// Scenario 8: two nodes, mTLS (HBONE) vs plaintext.
    CrossNode,
    /// Scenario 9: one agent against a simulated 5,000-node cluster.
    Scale,
    /// Scenario 10: authorization, 100 policies (L4, HTTP) vs none, on a one-node mesh.
    Authz,
    /// The peer comparison: Ambit, ztunnel, HAProxy and direct on two nodes (builds
    /// ztunnel, about 8 minutes the first time); only when asked for.
    Peers,
}

impl Args {
    fn runs(&self, part: Part) -> bool {
        if self.peers {
            return part == Part::Peers;
        }
        if self.only.is_empty() {
            return part != Part::Peers;
        }
        self.only.contains(&part)
    }

    /// Whether node scenario `number` (1-7) runs.
    fn runs_scenario(&self, number: u8) -> bool {
        self.scenarios.is_empty() || self.scenarios.contains(&number)
    }
}

/// How much each scenario does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub reps: usize,
    /// Requests per h2load run.
    pub requests: u64,
    /// Seconds per fixed-rate run.
    pub rate_secs: u64,
    /// Sequential connections per connection-rate run.
    pub connections: u64,
    pub tcp_bytes: u64,
    pub idle_connections: usize,
    /// Services in the control-plane scenarios (two HTTPRoutes each).
    pub services: usize,
    /// Manifest changes timed in the bed.
    pub changes: usize,
    /// Pod churn events timed in the mesh-scale scenario.
    pub scale_changes: usize,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let mut p = if args.quick {
            Plan {
                reps: 1,
                requests: 20_000,
                rate_secs: 2,
                connections: 500,
                tcp_bytes: 128 << 20,
                idle_connections: 2_000,
                services: 10_000,
                changes: 5,
                scale_changes: 50,
            }
        } else {
            Plan {
                reps: 3,
                requests: 200_000,
                rate_secs: 5,
                connections: 2_000,
                tcp_bytes: 1 << 30,
                idle_connections: 10_000,
                services: 10_000,
                changes: 40,
                scale_changes: 200,
            }
        };
        if let Some(r) = args.reps {
            p.reps = r.max(1);
        }
        p
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn build(root: &Path) -> Result<()> {
    println!("==> building ambit-agent, ambit-pod, ambit-load and xtask (release)");
    let status = cargo()
        .current_dir(root)
        .args(["build", "--release", "-p", "ambit-agent", "-p", "ambit-e2e", "-p", "xtask", "--bins"])
        .status()?;
    if !status.success() {
        bail!("release build failed");
    }
    Ok(())
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `<repo>/target`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

fn release_bin(root: &Path, name: &str) -> PathBuf {
    target_dir(root).join("release").join(name)
}

pub fn run(args: &Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark needs root (eBPF, cgroups, network namespaces)");
    }
    if sysinfo::cpus() < 2 {
        bail!("the benchmark pins the proxy and the load generator to separate CPUs; this machine has one");
    }
    let plan = Plan::new(args);
    let nofile = procs::raise_own_nofile(NOFILE)?;
    if nofile < NOFILE {
        println!("note: open-file limit {nofile} (raising it to {NOFILE} is not permitted here)");
    }
    let root = crate::ebpf::repo_root();
    install::prerequisites()?;
    build(&root)?;
    // SAFETY: single-threaded at this point; the bed reads these to find its binaries.
    unsafe {
        std::env::set_var("AMBIT_POD_BIN", release_bin(&root, "ambit-pod"));
        std::env::set_var("AMBIT_AGENT_BIN", args.agent_bin.clone().unwrap_or_else(|| release_bin(&root, "ambit-agent")));
    }
    if args.soak {
        println!("==> soak: {} minutes of mixed traffic with pod and route churn", args.soak_minutes);
        let mut world = World::start(release_bin(&root, "ambit-load"))?;
        return soak::run(&mut world, args.soak_minutes, &target_dir(root.as_path()).join("bench"));
    }
    let mut report = Report::default();
    environment(&mut report, &plan);
    if let Some(bin) = &args.agent_bin {
        report.environment.push(("agent binary".into(), bin.display().to_string()));
    }
    let dir = target_dir(root.as_path()).join("bench");
    if args.runs(Part::Node) {
        let mut plots = plot::PlotData::default();
        single_node(&root, args, &plan, &mut report, &mut plots)?;
        match plot::write(&dir, &plots) {
            Ok(paths) => paths.iter().for_each(|p| println!("plot: {}", p.display())),
            Err(e) => report.fail("plots", format!("{e:#}")),
        }
    }
    if args.runs(Part::CrossNode) {
        println!("==> 8 cross-node: plaintext vs mTLS (two-node bed, agents restarted per wire)");
        let cross = (|| -> Result<()> {
            let mut world = cross_world::CrossWorld::start(release_bin(&root, "ambit-load"))?;
            cross_node::run(&mut world, &plan, &mut report)
        })();
        if let Err(e) = cross {
            println!("    failed: {e:#}");
            report.fail("8 cross-node", format!("{e:#}"));
        }
    }
    if args.runs(Part::Scale) {
        println!("==> 9 control plane at mesh scale (in-test API server, one agent)");
        if let Err(e) = mesh_scale::run(&plan, &mut report) {
            println!("    failed: {e:#}");
            report.fail("9 mesh scale", format!("{e:#}"));
        }
    }
    if args.runs(Part::Authz) {
        println!("==> 10 authorization: 100 policies (L4, HTTP) vs none (one-node bed, mesh on)");
        let authz = (|| -> Result<()> {
            let mut world = authz_world::AuthzWorld::start()?;
            authz::run(&mut world, &plan, &mut report)
        })();
        if let Err(e) = authz {
            println!("    failed: {e:#}");
            report.fail("10 authorization", format!("{e:#}"));
        }
    }
    if args.runs(Part::Peers) {
        println!("==> peers: Ambit, Istio's ztunnel, HAProxy and direct on two nodes");
        let (target, load) = (target_dir(root.as_path()), release_bin(&root, "ambit-load"));
        if let Err(e) = peers::run(&root, &target, &load, &plan, &mut report.peers) {
            println!("    failed: {e:#}");
            report.peers.fail("peer comparison", format!("{e:#}"));
        }
    }

    report.write(&dir)?;
    println!("\n{}", report.markdown());
    println!("written: {} and {}", dir.join("report.md").display(), dir.join("report.json").display());
    Ok(())
}

/// Scenarios 1-7 on the one-node bed; scenarios 1 and 2 also fill `plots`.
fn single_node(root: &Path, args: &Args, plan: &Plan, report: &mut Report, plots: &mut plot::PlotData) -> Result<()> {
    if args.runs_scenario(7) {
        control_plane_step(root, plan, report);
    }
    single_node_bed(root, args, plan, report, plots)
}

fn control_plane_step(root: &Path, plan: &Plan, report: &mut Report) {
    println!("==> 7 control plane, in process ({} Services, {} HTTPRoutes)", plan.services, plan.services * 2);
    if let Err(e) = control_plane_in_process(root, plan, report) {
        report.fail("7 control plane (in process)", format!("{e:#}"));
    }
}

/// Scenarios 1-7 in the one-node bed.
fn single_node_bed(root: &Path, args: &Args, plan: &Plan, report: &mut Report, plots: &mut plot::PlotData) -> Result<()> {
    println!("==> bringing up the bed (agent on CPU {PROXY_CPU}, load generator and echo pods on CPU {LOAD_CPU})");
    let mut world = World::start(release_bin(root, "ambit-load"))?;
    let haproxy_pid = world.start_haproxy()?;

    type Step<'a> = (&'a str, Box<dyn FnMut(&World, &mut Report) -> Result<()> + 'a>);
    let plan_ref = plan;
    let (core_points, latency_points) = (&mut plots.cores, &mut plots.latency);
    let steps: Vec<Step> = vec![
        ("1 HTTP/1.1 max throughput", Box::new(move |w, r| throughput::run(w, haproxy_pid, plan_ref, r, core_points))),
        ("2 fixed-rate latency", Box::new(move |w, r| latency::run(w, haproxy_pid, plan_ref, r, latency_points))),
        ("3 new connection per request", Box::new(move |w, r| connect::run_rates(w, plan_ref, r))),
        ("4 h2c", Box::new(move |w, r| h2::run(w, plan_ref, r))),
        ("5 TCP passthrough", Box::new(move |w, r| tcp::run(w, plan_ref, r))),
        ("6 memory", Box::new(move |w, r| memory::run(w, haproxy_pid, plan_ref, r))),
        ("7 manifest change → effect", Box::new(move |w, r| change::run(w, plan_ref, r))),
    ];
    for (name, mut step) in steps {
        let number = name.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if !args.runs_scenario(number) {
            continue;
        }
        println!("==> {name}");
        if let Err(e) = step(&world, report) {
            println!("    failed: {e:#}");
            report.fail(name, format!("{e:#}"));
        }
    }

    if args.runs_scenario(1) {
        throughput_restarts(&mut world, plan, report, plots);
    }
    if args.runs_scenario(3) {
        println!("==> 3 connect hook cost (attached and detached rounds alternating)");
        if let Err(e) = connect::hook_cost(&mut world, plan, report) {
            println!("    failed: {e:#}");
            report.fail("3 connect hook cost", format!("{e:#}"));
        }
    }
    drop(world);
    Ok(())
}

/// Scenario 1's runs that restart the proxies: metrics on vs off, and two cores.
fn throughput_restarts(world: &mut World, plan: &Plan, report: &mut Report, plots: &mut plot::PlotData) {
    println!("==> 1 metrics on vs off (agent restarted per run)");
    if let Err(e) = throughput::metrics_overhead(world, plan, report) {
        println!("    failed: {e:#}");
        report.fail("1 metrics overhead", format!("{e:#}"));
    }
    println!("==> 1 max throughput, proxy on 2 cores (agent and HAProxy restarted)");
    if let Err(e) = throughput::run_two_cores(world, plan, report, &mut plots.cores) {
        println!("    failed: {e:#}");
        report.fail("1 max throughput, 2 cores", format!("{e:#}"));
    }
}

fn environment(report: &mut Report, plan: &Plan) {
    let env = &mut report.environment;
    env.push(("CPU".into(), format!("{} × {}", sysinfo::cpus(), sysinfo::cpu_model())));
    env.push(("kernel".into(), sysinfo::kernel()));
    env.push((
        "pinning".into(),
        format!(
            "proxy under test started pinned (ambit-agent --workers 1, all threads; HAProxy nbthread 1) on CPU {PROXY_CPU}; \
             load generator and echo backends on CPU {LOAD_CPU} (taskset). Two-core runs: ambit-agent --workers 2 and \
             HAProxy nbthread 2 on CPUs {PROXY_CPU},{LOAD_CPU}, shared with h2load (-t 2) and the echo backends"
        ),
    ));
    env.push((
        "load generators".into(),
        format!(
            "h2load ({}) for maximum throughput (HTTP/1.1 and h2c); ambit-load (tests/src/bin/ambit-load.rs, hyper) \
             for fixed-rate open-loop latency, connection rate, TCP transfer, idle connections and change polling",
            sysinfo::tool_version("h2load", "--version")
        ),
    ));
    env.push(("HAProxy".into(), sysinfo::tool_version("haproxy", "-v")));
    env.push(("build".into(), "release (debug = 1)".into()));
    env.push(("plan".into(), format!("{plan:?}")));
}

/// Runs the optimised xtask's `bench-control-plane` and turns its JSON into figures.
fn control_plane_in_process(root: &Path, plan: &Plan, report: &mut Report) -> Result<()> {
    let out = Command::new(release_bin(root, "xtask"))
        .args(["bench-control-plane", "--services", &plan.services.to_string(), "--repetitions", &plan.reps.max(3).to_string()])
        .output()
        .context("running xtask bench-control-plane")?;
    if !out.status.success() {
        bail!("bench-control-plane failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let routes = v["http_routes"].as_u64().unwrap_or(0);
    let scenario = format!("7 control plane ({} Services, {routes} HTTPRoutes)", v["services"]);
    let nums = |k: &str| -> Vec<f64> { v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default() };
    let mut build = Figure::new(&scenario, "route table build (translate)", "ms", Better::Lower);
    build.ambit = nums("build_ms");
    let build_why = format!(
        "the repetitions took {}; the same translation of the same state, made again interleaved with one-change \
         rebuilds, took {:.0} ms (median)",
        report::spread(&build.ambit, "ms"),
        report::median(&nums("change_full_ms")).unwrap_or(f64::NAN)
    );
    report.push(
        build
            .target("≤ 500 ms", |_, m| m <= 500.0)
            .note(format!(
                "from the parsed objects to the proxy configuration; parsing the YAML took {:.2} s more",
                v["parse_s"].as_f64().unwrap_or(f64::NAN)
            ))
            .why(build_why),
    );
    let mut change = Figure::new(&scenario, "route table rebuild after one HTTPRoute change", "ms", Better::Lower);
    change.ambit = nums("change_ms");
    report.push(change.note(format!(
        "translate reusing the previous translation (unchanged Service index and compiled routes); a fresh translation of the same state, interleaved: {:.0} ms",
        report::median(&nums("change_full_ms")).unwrap_or(f64::NAN)
    )));
    let mut mem = Figure::new(&scenario, "route table memory", "MiB", Better::Lower);
    mem.ambit = vec![v["table_bytes"].as_f64().unwrap_or(f64::NAN) / (1 << 20) as f64];
    report.push(mem.note("live heap bytes held by the translation (counting allocator)"));
    let mut lookup = Figure::new(&scenario, "route lookup per request", "ns", Better::Lower);
    lookup.ambit = nums("lookup_ns");
    let mut hot = Figure::new(&scenario, "route lookup per request, 100 hot Services", "ns", Better::Lower);
    hot.ambit = nums("hot_lookup_ns");
    let (cold_ns, hot_ns) = (lookup.ambit_median().unwrap_or(f64::NAN), hot.ambit_median().unwrap_or(f64::NAN));
    report.push(
        lookup
            .target("≤ 1000 ns", |_, m| m <= 1000.0)
            .note("Service by dialled address + the caller scope's route list, header + prefix match; each lookup a different Service, spread over all of them (cold caches)")
            .why(format!(
                "the same lookups over 100 hot Services take {hot_ns:.0} ns, so {:.0} ns of the {cold_ns:.0} are the wait for memory: \
                 the Services' tables do not fit in the CPU caches, and each lookup follows a chain of dependent loads through them",
                cold_ns - hot_ns
            )),
    );
    report.push(hot.note("the same lookups confined to 100 of the Services (table in cache): the per-request code's own cost"));
    Ok(())
}
