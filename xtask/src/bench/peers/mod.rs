//! `cargo xtask bench --peers`: Ambit side by side with Istio ambient's node proxy,
//! ztunnel, with HAProxy and with a direct call, on the same two-node bed (README
//! "Benchmarks", peers).
//!
//! - [`build`] builds ztunnel once from the shared source tarball;
//! - Ambit's side is the cross-node bed ([`super::cross_world`]): a client pod on
//!   node 1, an echo pod on node 2, one agent per node, plaintext or mTLS;
//! - [`ztunnel`] adds its own client and echo pods to the same bed, with ztunnel's
//!   in-pod capture and one ztunnel per node;
//! - [`haproxy`] runs HAProxy on node 1;
//! - [`measure`] runs the same scenarios against each system, interleaved per
//!   repetition, and [`usage`] what explains the figures (the proxies' CPU use per
//!   node, the restart's steps); [`check`] proves the mTLS wire first; [`table`] is
//!   the report's part, and [`why`] the measured explanation beside each target.

mod build;
mod check;
mod haproxy;
mod measure;
pub mod table;
mod usage;
mod why;
mod xds;
mod ztunnel;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};

use super::cross_world::{CrossWorld, Wire};
use super::Plan;
use measure::{Ctx, Figures, Subject};
use table::{PeerFigure, PeerSection, System};

/// The client's node's core (node 1 on CPU 0, node 2 on CPU 1, as in scenario 8).
const CLIENT_CPU: usize = 0;

/// Everything the comparison runs on.
/// Fields drop in order: the ztunnels and HAProxy stop before the bed goes.
struct Peers {
    zt: ztunnel::ZtunnelBed,
    haproxy: Option<haproxy::Haproxy>,
    server: ambit_e2e::Pod,
    world: CrossWorld,
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.haproxy = None;
        self.world.stop_agents();
    }
}

pub fn run(root: &Path, target_dir: &Path, load_bin: &Path, plan: &Plan, section: &mut PeerSection) -> Result<()> {
    install_prerequisites()?;
    println!("==> peers: building ztunnel (cached in {})", target_dir.join("peers").display());
    let build = build::ensure(root, target_dir)?;
    println!("    {}", build.describe());
    conditions(section, &build, plan);
    println!("==> peers: two-node bed, Ambit's and ztunnel's pods");
    let world = CrossWorld::start(load_bin.to_path_buf())?;
    let server = world.bed.first_pod("bench-x", &[("app", "echo")])?;
    let zt = ztunnel::ZtunnelBed::start(&world.bed, build)?;
    let mut peers = Peers { zt, haproxy: None, server, world };
    match haproxy::Haproxy::start(&peers.world.bed, &peers.server, &peers.world.client, CLIENT_CPU, load_bin) {
        Ok(h) => peers.haproxy = Some(h),
        Err(e) => section.fail("HAProxy", format!("{e:#}")),
    }
    let ctx = Ctx { load_bin, plan };
    let mut figs = Figures::default();
    for rep in 0..plan.reps {
        for system in System::ALL {
            println!("==> peers: {} (repetition {} of {})", system.label(), rep + 1, plan.reps);
            if let Err(e) = peers.measure(system, &ctx, &mut figs, rep == 0) {
                println!("    failed: {e:#}");
                figs.failures.push((format!("{} (repetition {})", system.label(), rep + 1), format!("{e:#}")));
            }
        }
    }
    drop(peers);
    finish(figs, plan, section);
    Ok(())
}

impl Peers {
    fn subject(&self, system: System, http: SocketAddr, tcp: SocketAddr, proxies: Vec<i32>) -> Subject {
        Subject { system, client: self.world.client.clone(), cpu: CLIENT_CPU, http, tcp, proxies }
    }

    /// Sets `system` up (only its proxies run), checks it on the first repetition, measures.
    fn measure(&mut self, system: System, ctx: &Ctx, figs: &mut Figures, first: bool) -> Result<()> {
        match system {
            System::AmbitPlain | System::AmbitMtls => return self.measure_ambit(system, ctx, figs, first),
            System::Ztunnel => return self.measure_ztunnel(ctx, figs, first),
            _ => self.world.stop_agents(),
        }
        let s = match system {
            System::Direct => {
                let ip = self.server.ipv4;
                self.subject(system, SocketAddr::new(ip.into(), 8080), SocketAddr::new(ip.into(), 9090), vec![])
            }
            _ => {
                let h = self.haproxy.as_ref().context("HAProxy did not start")?;
                self.subject(system, h.http(), h.tcp(), vec![h.pid()])
            }
        };
        s.warm_up(ctx)?;
        measure::run_all(&s, ctx, figs, None);
        Ok(())
    }

    fn measure_ambit(&mut self, system: System, ctx: &Ctx, figs: &mut Figures, first: bool) -> Result<()> {
        let wire = if system == System::AmbitMtls { Wire::Mtls } else { Wire::Plaintext };
        self.world.start_agents(wire)?;
        let s = self.subject(system, self.world.service(80)?, self.world.service(9000)?, self.world.agent_pids.clone());
        s.warm_up(ctx)?;
        if first && wire == Wire::Mtls {
            check::crosses_as_hbone(&self.world.bed, &s, ctx)?;
            println!("    checked: the call crossed between the nodes only as TLS on 15008");
        }
        let world = &mut self.world;
        let mut restart = || world.hand_over_client_agent();
        measure::run_all(&s, ctx, figs, Some(&mut restart));
        Ok(())
    }

    fn measure_ztunnel(&mut self, ctx: &Ctx, figs: &mut Figures, first: bool) -> Result<()> {
        self.world.stop_agents();
        let mut s = self.subject(System::Ztunnel, self.zt.service(80), self.zt.service(9000), self.zt.pids());
        s.client = self.zt.client.clone();
        s.warm_up(ctx)?;
        if first {
            check::ztunnel_mtls(&self.world.bed, &self.zt, &s, ctx)?;
            println!("    checked: TLS on 15008 only, and both ztunnels report the SPIFFE identities");
        }
        let (zt, bed) = (&mut self.zt, &self.world.bed);
        let mut restart = || zt.restart_client_node(bed);
        measure::run_all(&s, ctx, figs, Some(&mut restart));
        Ok(())
    }
}

/// protoc builds ztunnel; iptables runs its in-pod capture.
fn install_prerequisites() -> Result<()> {
    for p in ["protobuf-compiler", "iptables"] {
        super::install::apt_install(p)?;
    }
    Ok(())
}

fn conditions(section: &mut PeerSection, build: &build::ZtunnelBuild, plan: &Plan) {
    let c = &mut section.conditions;
    c.push(("ztunnel".into(), build.describe()));
    c.push((
        "topology".into(),
        "two nodes (network namespaces on a bridge); a client pod on node 1 calls an echo pod on node 2 through a Service; \
         node 1 (client pod, its proxy, the load generator) pinned to CPU 0, node 2 (echo pod, its proxy) to CPU 1"
            .into(),
    ));
    c.push((
        "systems".into(),
        "direct: the client calls the echo pod's IP. Ambit: one agent per node (--workers 1), connect() redirected by eBPF, \
         HTTP routed at L7 on node 1; plaintext = mesh off, mTLS = HBONE between the agents. ztunnel: one per node \
         (ZTUNNEL_WORKER_THREADS=1, in-pod iptables capture, local XDS, fake CA), L4 only, always HBONE mTLS. \
         HAProxy: one process on node 1 (nbthread 1), HTTP mode to the echo pod, plaintext, one hop"
            .into(),
    ));
    c.push(("repetitions".into(), format!("{} (systems interleaved in each)", plan.reps)));
}

/// Turns the collected figures into the section, with targets and notes.
fn finish(figs: Figures, plan: &Plan, section: &mut PeerSection) {
    let mut list: Vec<PeerFigure> = figs.list.into_iter().map(|f| annotate(f, plan)).collect();
    why::attach(&mut list, &figs.usage);
    for f in list {
        section.push(f);
    }
    section.usage = figs.usage;
    section.failures.extend(figs.failures);
}

fn annotate(f: PeerFigure, plan: &Plan) -> PeerFigure {
    let rate_1k = measure::rate_scenario(1_000);
    match (f.scenario.as_str(), f.metric.as_str()) {
        (measure::THROUGHPUT, "proxies' CPU per request, both nodes") => f.target_vs_ztunnel().note(format!(
            "utime+stime of every proxy process of the system (both nodes; HAProxy: its one process) over h2load --h1 -c 64 -n {}, per request",
            plan.requests / 2
        )),
        (s, "latency p99") if s == rate_1k => f.target_vs_ztunnel().note(format!(
            "ambit-load rate: open loop, latency from each request's due time (no coordinated omission), 64 keep-alive connections, {} s",
            plan.rate_secs
        )),
        (measure::MEMORY, "proxies' memory per idle connection") => f.target_vs_ztunnel().note(format!(
            "(RSS of the proxies on both nodes with {} idle keep-alive connections open, one request each − before) / connections",
            plan.idle_connections
        )),
        (measure::RESTART, "failed requests") => {
            let (ka, nc) = measure::RESTART_RATES;
            f.target("Ambit: 0 (report ztunnel's)", |f| {
                let runs = [System::AmbitPlain, System::AmbitMtls].iter().filter_map(|s| f.runs.get(s)).flatten().copied().collect::<Vec<_>>();
                (!runs.is_empty()).then(|| runs.iter().all(|&x| x == 0.0))
            })
            .note(format!(
                "ambit-load steady: {ka} keep-alive req/s over 16 connections + {nc} new-connection req/s; 3 s in, a successor proxy starts \
                 on node 1 beside the old one, which then gets SIGTERM (Ambit: README \"Upgrades without an outage\"; ztunnel: a second \
                 ztunnel takes the pod, both listen with SO_REUSEPORT); a request on a reused connection closed by the old proxy is retried once"
            ))
        }
        (measure::TCP, _) => f.note(format!("{} MiB written and echoed back over one connection", (plan.tcp_bytes / 2) >> 20)),
        _ => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::Better;

    #[test]
    fn restart_target_needs_zero_failures_from_both_ambit_wires() {
        let plan = Plan {
            reps: 1,
            requests: 1,
            rate_secs: 1,
            connections: 1,
            tcp_bytes: 1,
            idle_connections: 1,
            services: 1,
            changes: 1,
            scale_changes: 1,
        };
        let mut f = PeerFigure::new(measure::RESTART, "failed requests", "requests", Better::Lower);
        f.push(System::AmbitPlain, 0.0);
        f.push(System::AmbitMtls, 2.0);
        f.push(System::Ztunnel, 40.0);
        let f = annotate(f, &plan);
        assert_eq!(f.target.as_ref().and_then(|t| t.met), Some(false));
        let mut g = PeerFigure::new(measure::RESTART, "failed requests", "requests", Better::Lower);
        g.push(System::Ztunnel, 40.0);
        let g = annotate(g, &plan);
        assert_eq!(g.target.as_ref().and_then(|t| t.met), None, "undecided without Ambit runs");
    }
}
