//! Upgrades without an outage: a second agent starts on the node beside the first (a
//! DaemonSet surge rollout), the first gets SIGTERM, and a pod's constant load sees no
//! failed request. Needs root; fails (never skips) without it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ambit_e2e::{AgentOptions, TestBed};
use support::*;

/// How long the load runs; the handover must be over well before it ends.
const LOAD_SECS: u64 = 25;
/// Requests per second of each kind (keep-alive, new connection per request).
const RATE: u64 = 150;

/// Sum of `ambit_requests_total` in a `/metrics` text.
fn requests_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("ambit_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An agent that also serves its admin API on its own unix socket (`name` in the bed's
/// scratch directory), as in the DaemonSet, where the kubelet probes through it.
fn with_admin_socket(bed: &TestBed, name: &str) -> (AgentOptions, PathBuf) {
    let socket = bed.scratch_dir().join(name);
    let extra_args = vec!["--admin-socket".into(), socket.display().to_string()];
    (AgentOptions { extra_args, ..AgentOptions::default() }, socket)
}

/// `ambit-agent probe --admin-socket SOCKET`: whether it exited 0 (the agent is ready).
fn probe_ready(socket: &Path) -> bool {
    std::process::Command::new(ambit_e2e::binaries::ambit_agent().unwrap())
        .args(["probe", "--admin-socket"])
        .arg(socket)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn agent_restarts_under_constant_load_with_zero_failed_requests() {
    let bed = TestBed::new().unwrap();
    bed.apply_yaml(WORLD).unwrap();
    let (options, old_socket) = with_admin_socket(&bed, "admin-old.sock");
    let agent = ambit_e2e::RunningAgent::start(&bed, &options).unwrap();
    let mut world = World { agent, bed };
    assert!(probe_ready(&old_socket), "the exec probe does not find the agent ready");
    let client = world.client("mesh-a", "steady").unwrap();
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));

    let target = format!("{}:80", world.vip());
    let (rate, secs) = (RATE.to_string(), LOAD_SECS.to_string());
    let load = client
        .command(env!("CARGO_BIN_EXE_ambit-load"))
        .args(["steady", "--addr", &target, "--keepalive-rate", &rate, "--keepalive-conns", "8"])
        .args(["--new-conn-rate", &rate, "--secs", &secs, "--timeout-ms", "5000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let load_started = Instant::now();

    // The old agent serves the load on its own for a moment.
    assert!(wait_until(Duration::from_secs(5), || {
        world.agent.admin("GET", "/metrics").is_ok_and(|(_, m)| requests_total(&m) >= 100.0)
    })
    .is_some(), "the old agent served no load:\n{}", world.agent.log_tail(20));

    // The successor starts beside it (same node address and port, same pins) and, once
    // ready, takes a share of the new connections.
    let (options, new_socket) = with_admin_socket(&world.bed, "admin-new.sock");
    let successor = world.agent.start_successor(&world.bed, &options).unwrap();
    assert!(probe_ready(&new_socket), "the successor's exec probe does not find it ready");
    let shared = wait_until(Duration::from_secs(5), || {
        successor.admin("GET", "/metrics").is_ok_and(|(_, m)| requests_total(&m) >= 10.0)
    });
    assert!(shared.is_some(), "the successor served no request beside the old agent:\n{}", successor.log_tail(20));

    // The old agent gets SIGTERM (its pod is deleted) and drains.
    let status = world.agent.hand_over_to(successor).unwrap();
    assert!(status.success(), "old agent exit status {status}");
    let handed_over = load_started.elapsed();
    assert!(!probe_ready(&old_socket), "the stopped agent's probe still succeeds");
    assert!(probe_ready(&new_socket));
    let load_left = Duration::from_secs(LOAD_SECS).saturating_sub(handed_over);
    assert!(load_left >= Duration::from_secs(3), "handover took until {handed_over:?} of a {LOAD_SECS} s load");

    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "ambit-load failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("handover at {handed_over:?}; load report: {report:#}");
    assert_eq!(report["errors"], 0, "failed requests during the restart: {report:#}\nagent log:\n{}", world.agent.log_tail(30));
    // The load ran at (about) its rate the whole time, also after the old agent left.
    let expected = (2 * RATE * LOAD_SECS) as f64;
    let ok = report["ok"].as_f64().unwrap();
    assert!(ok >= 0.8 * expected, "only {ok} of about {expected} requests ran: {report:#}");
    let gap = report["longest_gap_ms"].as_f64().unwrap();
    println!("longest gap between successful requests: {gap:.1} ms");
    assert!(gap < 2000.0, "a {gap:.0} ms gap without a successful request: {report:#}");
    // The successor alone serves now.
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));
}

/// Binds a listener like the proxy's (SO_REUSEPORT), never accepting until asked.
fn reuseport_listener(addr: std::net::SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// What the handover relies on in the kernel: once the agent has set
/// `net.ipv4.tcp_migrate_req=1` in the node's network namespace, connections queued on
/// a reuseport listener that closes are accepted from the other one, none reset.
#[test]
fn a_closed_listeners_queued_connections_move_to_the_other_listener() {
    let world = World::start(Default::default()).unwrap();
    let node_ip = world.bed.node_ip();
    let accepted = ambit_e2e::netns::in_netns(world.bed.node_netns(), move || {
        let sysctl = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")?;
        anyhow::ensure!(sysctl.trim() == "1", "the agent left tcp_migrate_req at {sysctl:?}");
        let addr = std::net::SocketAddr::new(node_ip.into(), 15999);
        let (closing, staying) = (reuseport_listener(addr)?, reuseport_listener(addr)?);
        // Handshakes complete in the kernel: each connection waits in one of the two
        // accept queues, spread by the reuseport hash.
        let clients = (0..64).map(|_| std::net::TcpStream::connect(addr)).collect::<Result<Vec<_>, _>>()?;
        drop(closing);
        staying.set_nonblocking(true)?;
        let mut accepted = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while accepted < clients.len() && Instant::now() < deadline {
            match staying.accept() {
                Ok(_) => accepted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(accepted)
    })
    .unwrap();
    assert_eq!(accepted, 64, "connections queued on the closed listener were lost");
}
