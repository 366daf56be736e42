//! One tenant must never hurt another, through the real eBPF redirect: a pod's
//! slowloris connection is cut off, and HTTP/2 floods (rapid reset, CONTINUATION) end
//! in GOAWAY while the agent's memory stays bounded. Needs root; fails (never skips)
//! without it.

mod support;

use std::time::Duration;

use ambit_e2e::abuse_client::ENHANCE_YOUR_CALM;
use ambit_e2e::AgentOptions;
use support::*;

/// The agent's resident set size in KiB, from /proc/<pid>/status.
fn agent_rss_kib(world: &World) -> u64 {
    let pid = world.agent.pid().expect("agent running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[test]
fn slowloris_head_is_cut_off_within_the_timeout() {
    let options = AgentOptions { extra_args: vec!["--request-head-timeout".into(), "1s".into()], ..AgentOptions::default() };
    let world = World::start(options).unwrap();
    let client = world.client("mesh-a", "slowloris").unwrap();
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));
    let to = format!("{}:80", world.vip()).parse().unwrap();
    let report = client.run_abuse("slowloris", to, Duration::from_secs(8)).unwrap();
    assert_eq!(report.error, None);
    let closed = report.closed_after_ms.unwrap_or_else(|| {
        panic!("slow head not cut off within 8 s: {report:?}\nagent log:\n{}", world.agent.log_tail(20))
    });
    assert!((900..5000).contains(&closed), "cut off after {closed} ms (timeout 1 s): {report:?}");
    assert!(report.answer.is_empty() || report.answer.starts_with("HTTP/1.1 408"), "{report:?}");
    // Everyone else is still served.
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));
}

#[test]
fn http2_floods_get_goaway_and_memory_stays_bounded() {
    let world = World::start(AgentOptions::default()).unwrap();
    let client = world.client("mesh-a", "flooder").unwrap();
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));
    let rss_before = agent_rss_kib(&world);
    // The h2c (gRPC) port and the `appProtocol: http` port both take HTTP/2.
    for port in [7070, 80] {
        let to = format!("{}:{port}", world.vip()).parse().unwrap();
        for _ in 0..3 {
            let report = client.run_abuse("rapid-reset", to, Duration::from_secs(10)).unwrap();
            assert_eq!(report.goaway, Some(ENHANCE_YOUR_CALM), "rapid reset on port {port}: {report:?}");
            let report = client.run_abuse("continuation", to, Duration::from_secs(10)).unwrap();
            assert!(report.goaway.is_some() || report.closed_after_ms.is_some(), "CONTINUATION flood on port {port}: {report:?}");
            assert!(report.sent < 64 << 20, "the agent read the whole CONTINUATION flood: {report:?}");
        }
    }
    let grown_mib = agent_rss_kib(&world).saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 64, "agent RSS grew by {grown_mib} MiB during the floods");
    assert_eq!(get(&client, "http://echo.server/"), Ok(200));
}
