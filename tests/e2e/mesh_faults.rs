//! The mesh's refusals and certificate rotation on the multi-node bed, with real agents
//! (standalone mode, a CA made by `ambit-agent ca init`) and real eBPF. A TLS probe
//! (`ambit-tls-probe`, run in a node's network namespace) plays a peer node: as a
//! client with certificates made here (rcgen, signed by the bed's CA key or by a
//! foreign CA), as an impostor server, and, inside a pod, as a long-lived TCP stream.
//! Needs root; fails (never skips) without it.
//!
//! What the tests prove:
//! * **Refusals at the inbound side** (node 2's HBONE port): a certificate of a foreign
//!   CA and one of a CA of another trust domain are refused as `unknown_ca` (the chain
//!   is checked before the SPIFFE ID, so a foreign trust domain's own CA is an unknown
//!   CA); a certificate of the bed's CA naming another trust domain as
//!   `foreign_trust_domain`; an expired certificate of the bed's CA as `expired`;
//!   plaintext bytes as `plaintext`. Each is counted once under its reason in
//!   `ambit_hbone_refusals_total`, and logged at most once per reason every 10 s (a
//!   second `unknown_ca` within that time is counted, not logged). A valid certificate
//!   is accepted (the control case: CONNECT answered 200).
//! * **Secure naming on the caller's side**: node 3 runs an impostor HBONE server
//!   presenting a certificate of the bed's CA for another identity; a call to the pod
//!   said to be there gets 503, the impostor receives no CONNECT and no byte of the
//!   request, and node 1 counts `wrong_identity`.
//! * **A node of another CA**: node 2's agent signs with its own CA; node 1's calls to
//!   it fail closed (503, nothing of the request on the cluster network) and both sides
//!   count `unknown_ca`.
//! * **Rotation**: with one-minute certificates, a TCP stream through the mesh
//!   exchanging a message every 2 s survives three rotations of both nodes'
//!   certificates (serials in `/config_dump`), and it keeps the caller certificate
//!   its tunnel connection was made with (node 2's access log names the serial);
//!   new connections present the new certificates (node 2's server certificate as a
//!   probe sees it; node 1's client certificate on a new tunnel connection).
//!
//! Not tested here: the CA becoming unreachable. In standalone mode the agent loads
//! the CA key once at start and signs in process, so no real outage can happen; the
//! behaviour is covered by the certificate store's own tests.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ambit_e2e::long_stream::Exchange;
use ambit_e2e::mesh_certs::{TestSigner, Validity};
use ambit_e2e::tls_probe::{ClientReport, ServerEvent};
use ambit_e2e::{AgentOptions, ClientRequest, MeshCa, Pod, PodSpec, RunningAgent, TestBed};
use support::mesh::{held_serial, spiffe};
use support::poll;

const PROBE: &str = env!("CARGO_BIN_EXE_ambit-tls-probe");
const HBONE_PORT: u16 = ambit_e2e::capture::HBONE_PORT;
const ECHO_HTTP_PORT: u16 = ambit_e2e::echo_server::HTTP_PORT;
const ECHO_TCP_PORT: u16 = ambit_e2e::echo_server::TCP_PORT;
const OTHER_DOMAIN: &str = "other.example";

const SERVICES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: server, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mesh-a, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: server}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: tcp, port: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: echo-3, namespace: server}
spec:
  selector: {app: echo-3}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
"#;

fn bed(nodes: usize) -> TestBed {
    let bed = support::multi_node_bed(nodes);
    bed.apply_yaml(SERVICES).unwrap();
    bed
}

fn mesh_options(ca: &MeshCa, extra: &[&str]) -> AgentOptions {
    let mut extra_args = ca.agent_args();
    extra_args.extend(extra.iter().map(|a| a.to_string()));
    AgentOptions { access_log: true, extra_args, ..AgentOptions::default() }
}


/// The SNI naming the identity the server must present (README, "Workload certificates").
fn sni(namespace: &str, account: &str) -> String {
    format!("{account}.{namespace}.identity.ambit")
}

fn hbone_addr(bed: &TestBed, node: usize) -> SocketAddr {
    SocketAddr::new(bed.node(node).unwrap().ipv4().into(), HBONE_PORT)
}


fn wait_for_certificate(agent: &RunningAgent, identity: &str) -> String {
    poll(Duration::from_secs(15), || held_serial(agent, identity))
        .unwrap_or_else(|| panic!("node {} holds no certificate for {identity}:\n{}", agent.node(), agent.log_tail(30)))
}

/// `ambit_hbone_refusals_total` by reason.
fn refusals(agent: &RunningAgent) -> BTreeMap<String, u64> {
    let (status, metrics) = agent.admin("GET", "/metrics").unwrap();
    assert_eq!(status, 200, "{metrics}");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("ambit_hbone_refusals_total{"))
        .filter_map(|rest| {
            let reason = rest.split("reason=\"").nth(1)?.split('"').next()?.to_string();
            let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((reason, value as u64))
        })
        .collect()
}

/// Waits until `agent` has counted `wanted` more refusals for `reason` than `before`.
fn wait_for_refusals(agent: &RunningAgent, before: &BTreeMap<String, u64>, reason: &str, wanted: u64) -> BTreeMap<String, u64> {
    let base = before.get(reason).copied().unwrap_or(0);
    let counted = poll(Duration::from_secs(10), || {
        let now = refusals(agent);
        (now.get(reason).copied().unwrap_or(0) >= base + wanted).then_some(now)
    });
    counted.unwrap_or_else(|| {
        panic!("node {} did not count {wanted} `{reason}` refusal(s): {:?}\n{}", agent.node(), refusals(agent), agent.log_tail(30))
    })
}

/// Lines of `agent`'s log that report a refused HBONE peer for `reason` (inbound:
/// "HBONE connection refused", outbound: "HBONE peer refused", both rate-limited).
fn refusal_log_lines(agent: &RunningAgent, reason: &str) -> usize {
    let tag = format!("\"reason\":\"{reason}\"");
    let limited = "refused (at most one line per reason every 10 s)";
    agent.log().lines().filter(|l| l.contains("HBONE") && l.contains(limited) && l.contains(&tag)).count()
}

/// Runs the probe client from node `node`'s network namespace.
fn probe_client(bed: &TestBed, node: usize, args: &[String]) -> ClientReport {
    let out = bed.node_command_on(node, PROBE).unwrap().arg("client").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("probe client {args:?}: {e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    })
}

/// Probe client arguments: handshake with `addr` naming `server_name`, presenting the
/// certificate and key `files`, then CONNECT to `connect`.
fn tls_args(addr: SocketAddr, server_name: &str, files: (PathBuf, PathBuf), connect: SocketAddr) -> Vec<String> {
    vec![
        "--addr".into(),
        addr.to_string(),
        "--sni".into(),
        server_name.into(),
        "--cert".into(),
        files.0.display().to_string(),
        "--key".into(),
        files.1.display().to_string(),
        "--connect".into(),
        connect.to_string(),
    ]
}

/// A child process whose stdout lines (JSON) arrive on a channel, with their arrival time.
struct Lines<T> {
    child: Child,
    lines: mpsc::Receiver<(Instant, T)>,
}

impl<T: serde::de::DeserializeOwned + Send + 'static> Lines<T> {
    fn spawn(mut command: std::process::Command) -> Self {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str(&line) {
                    Ok(value) => {
                        if tx.send((Instant::now(), value)).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("unparsable probe line {line:?}: {e}"),
                }
            }
        });
        Self { child, lines }
    }

    fn next(&self, limit: Duration) -> Option<(Instant, T)> {
        self.lines.recv_timeout(limit).ok()
    }
}

impl<T> Drop for Lines<T> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn inbound_refuses_foreign_expired_and_plaintext_peers() {
    let bed = bed(2);
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca")).unwrap();
    let echo = bed.add_pod(PodSpec::new("server", "echo-0").label("app", "echo").service_account("echo").on_node(2)).unwrap();
    let node2 = RunningAgent::start_on(&bed, 2, &mesh_options(&ca, &[])).unwrap();
    let served_serial = wait_for_certificate(&node2, &spiffe("server", "echo"));
    let addr = hbone_addr(&bed, 2);
    let pod = SocketAddr::new(echo.ipv4.into(), ECHO_TCP_PORT);
    let dir = bed.scratch_dir().join("probe-certs");
    let real = TestSigner::of_mesh_ca(&ca).unwrap();
    let web = spiffe("mesh-a", "web");
    let other_web = format!("spiffe://{OTHER_DOMAIN}/ns/mesh-a/sa/web");

    // The control case: a valid certificate of the bed's CA is accepted.
    let valid = real.issue(&web, Validity::Fresh(Duration::from_secs(600))).unwrap().write(&dir, "valid").unwrap();
    let report = probe_client(&bed, 1, &tls_args(addr, &sni("server", "echo"), valid, pod));
    assert_eq!(report.connect_status, Some(200), "a valid certificate was refused: {report:?}\n{}", node2.log_tail(20));
    assert_eq!(report.server_identity.as_deref(), Some(spiffe("server", "echo").as_str()), "{report:?}");
    assert_eq!(report.server_serial.as_deref(), Some(served_serial.as_str()), "{report:?}");

    let cases = [
        ("foreign-ca", TestSigner::foreign(ambit_e2e::mesh_ca::TRUST_DOMAIN).unwrap(), web.as_str(), Validity::Fresh(Duration::from_secs(600)), "unknown_ca"),
        ("foreign-domain-ca", TestSigner::foreign(OTHER_DOMAIN).unwrap(), other_web.as_str(), Validity::Fresh(Duration::from_secs(600)), "unknown_ca"),
        ("foreign-domain", TestSigner::of_mesh_ca(&ca).unwrap(), other_web.as_str(), Validity::Fresh(Duration::from_secs(600)), "foreign_trust_domain"),
        ("expired", TestSigner::of_mesh_ca(&ca).unwrap(), web.as_str(), Validity::Expired, "expired"),
    ];
    let mut unknown_ca_at = vec![];
    for (name, signer, uri, validity, reason) in cases {
        let before = refusals(&node2);
        if reason == "unknown_ca" {
            unknown_ca_at.push(Instant::now());
        }
        let files = signer.issue(uri, validity).unwrap().write(&dir, name).unwrap();
        let report = probe_client(&bed, 1, &tls_args(addr, &sni("server", "echo"), files, pod));
        assert!(report.connect_status.is_none() && report.error.is_some(), "{name}: not refused: {report:?}");
        let after = wait_for_refusals(&node2, &before, reason, 1);
        assert_eq!(after.values().sum::<u64>(), before.values().sum::<u64>() + 1, "{name}: counted under other reasons too: {before:?} -> {after:?}");
    }

    let before = refusals(&node2);
    let report = probe_client(&bed, 1, &["--addr".into(), addr.to_string(), "--plaintext".into(), "GET / HTTP/1.1\r\nHost: echo\r\n\r\n".into()]);
    // Closed without an answer (a reset when the refused bytes were left unread).
    let closed = report.plaintext_answer_bytes == Some(0)
        || report.error.as_deref().is_some_and(|e| e.contains("reset") && !e.contains("timed out"));
    assert!(closed, "plaintext got an answer or was not closed: {report:?}");
    let after = wait_for_refusals(&node2, &before, "plaintext", 1);
    assert_eq!(after.values().sum::<u64>(), before.values().sum::<u64>() + 1, "{before:?} -> {after:?}");

    // Each reason was logged; the two `unknown_ca` refusals, counted twice, were logged
    // once (at most one line per reason every 10 s) unless the machine took longer than
    // that between them.
    assert_eq!(after.get("unknown_ca"), Some(&2), "{after:?}");
    let apart = unknown_ca_at[1] - unknown_ca_at[0];
    for reason in ["unknown_ca", "foreign_trust_domain", "expired", "plaintext"] {
        let lines = refusal_log_lines(&node2, reason);
        let most = if reason == "unknown_ca" && apart >= Duration::from_secs(10) { 2 } else { 1 };
        assert!((1..=most).contains(&lines), "`{reason}` logged {lines} times (want 1..={most}):\n{}", node2.log_tail(40));
    }
}

/// The impostor on node 3: an HBONE server presenting a certificate of the bed's CA for
/// another identity than the pod said to be there.
fn start_impostor(bed: &TestBed, ca: &MeshCa) -> Lines<ServerEvent> {
    let signer = TestSigner::of_mesh_ca(ca).unwrap();
    let files = signer.issue(&spiffe("server", "other"), Validity::Fresh(Duration::from_secs(600))).unwrap();
    let (cert, key) = files.write(&bed.scratch_dir().join("impostor"), "impostor").unwrap();
    let mut command = bed.node_command_on(3, PROBE).unwrap();
    command.arg("server").args(["--addr", &hbone_addr(bed, 3).to_string(), "--seconds", "120"]);
    command.arg("--cert").arg(&cert).arg("--key").arg(&key);
    let impostor: Lines<ServerEvent> = Lines::spawn(command);
    let (_, first) = impostor.next(Duration::from_secs(10)).expect("the impostor server did not start");
    assert_eq!(first.event, "listening", "{first:?}");
    impostor
}

fn get(pod: &Pod, url: &str) -> ambit_e2e::RequestResult {
    let out = pod.run_client(&ClientRequest::http(url).timeout(Duration::from_secs(8))).unwrap();
    out.only().clone()
}

#[test]
fn callers_refuse_impostors_and_nodes_of_another_ca() {
    let bed = bed(3);
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca")).unwrap();
    let other_ca = MeshCa::create(&bed.scratch_dir().join("other-ca")).unwrap();
    bed.add_pod(PodSpec::new("server", "echo-0").label("app", "echo").service_account("echo").on_node(2)).unwrap();
    bed.add_pod(PodSpec::new("server", "echo-3-0").label("app", "echo-3").service_account("echo").on_node(3)).unwrap();
    let node1 = RunningAgent::start_on(&bed, 1, &mesh_options(&ca, &[])).unwrap();
    let node2 = RunningAgent::start_on(&bed, 2, &mesh_options(&other_ca, &[])).unwrap();
    let client = bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).service_account("web").on_node(1)).unwrap();
    node1.wait_enrolled("mesh-a", "client-1", Duration::from_secs(5)).unwrap();
    wait_for_certificate(&node1, &spiffe("mesh-a", "web"));
    wait_for_certificate(&node2, &spiffe("server", "echo"));

    // Secure naming: the impostor's certificate is valid, but not the pod's identity.
    let impostor = start_impostor(&bed, &ca);
    let before = refusals(&node1);
    let r = get(&client, "http://echo-3.server/impostor");
    assert_eq!(r.status, Some(503), "a call to the impostor's pod: {r:?}\n{}", node1.log_tail(20));
    wait_for_refusals(&node1, &before, "wrong_identity", 1);
    assert_eq!(refusal_log_lines(&node1, "wrong_identity"), 1, "{}", node1.log_tail(20));
    let (_, connection) = impostor.next(Duration::from_secs(15)).expect("the caller never reached the impostor");
    assert!(connection.handshake, "{connection:?}");
    assert!(connection.connects.is_empty() && connection.body_bytes == 0, "the request reached the impostor: {connection:?}");
    eprintln!("the impostor saw: {connection:?}");
    drop(impostor);

    // A node of another CA: fail closed, counted on both sides.
    let (before1, before2) = (refusals(&node1), refusals(&node2));
    let marker = format!("other-ca-{}", std::process::id());
    let capture = bed.capture(Duration::from_secs(30)).unwrap();
    let r = get(&client, &format!("http://echo.server/{marker}"));
    let captured = capture.finish().unwrap();
    assert_eq!(r.status, Some(503), "a call to a node of another CA: {r:?}\n{}", node1.log_tail(20));
    assert!(!captured.contains(marker.as_bytes()), "the request crossed the cluster network in plaintext");
    assert_eq!(captured.tcp_payload_bytes(ECHO_HTTP_PORT), 0, "bytes to the pod's port crossed the cluster network");
    assert!(captured.tls_client_hellos_to(HBONE_PORT) >= 1, "no TLS handshake was tried");
    wait_for_refusals(&node1, &before1, "unknown_ca", 1);
    wait_for_refusals(&node2, &before2, "unknown_ca", 1);
    assert_eq!((refusal_log_lines(&node1, "unknown_ca"), refusal_log_lines(&node2, "unknown_ca")), (1, 1), "not logged once on each side");
}

/// Reads both serials until each has changed `rotations` times (or the limit passes);
/// returns every serial seen per identity, in order.
fn watch_rotations(agents: [(&RunningAgent, &str); 2], rotations: usize, limit: Duration) -> [Vec<String>; 2] {
    let mut seen: [Vec<String>; 2] = [vec![], vec![]];
    let started = Instant::now();
    while started.elapsed() < limit && seen.iter().any(|s| s.len() < rotations + 1) {
        for (i, (agent, identity)) in agents.iter().enumerate() {
            if let Some(serial) = held_serial(agent, identity) {
                if seen[i].last() != Some(&serial) {
                    seen[i].push(serial);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    seen
}

#[test]
fn streams_survive_certificate_rotation_and_new_connections_use_new_certificates() {
    let bed = bed(2);
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca")).unwrap();
    let echo = bed.add_pod(PodSpec::new("server", "echo-0").label("app", "echo").service_account("echo").on_node(2)).unwrap();
    let agents = RunningAgent::start_all(&bed, &mesh_options(&ca, &["--cert-lifetime", "1m"])).unwrap();
    let client = bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).service_account("web").on_node(1)).unwrap();
    agents[0].wait_enrolled("mesh-a", "client-1", Duration::from_secs(5)).unwrap();
    let (web, echo_id) = (spiffe("mesh-a", "web"), spiffe("server", "echo"));
    let first_client_serial = wait_for_certificate(&agents[0], &web);
    wait_for_certificate(&agents[1], &echo_id);

    // One TCP connection through the mesh, a message every 2 s.
    let service = SocketAddr::new(bed.service_ip("server", "echo").unwrap().into(), ECHO_TCP_PORT);
    let mut command = client.command(PROBE);
    command.args(["stream", "--addr", &service.to_string(), "--interval-ms", "2000", "--seconds", "240"]);
    let stream: Lines<Exchange> = Lines::spawn(command);
    let (_, first) = stream.next(Duration::from_secs(10)).expect("the stream sent nothing");
    assert!(first.ok, "the stream failed at once: {first:?}\n{}", agents[0].log_tail(20));
    let client_serial_at_start = held_serial(&agents[0], &web).unwrap();

    let seen = watch_rotations([(&agents[0], &web), (&agents[1], &echo_id)], 3, Duration::from_secs(150));
    assert!(seen.iter().all(|s| s.len() >= 4), "fewer than three rotations in 150 s: {seen:?}");
    let rotated = Instant::now();
    let mut exchanges = vec![first];
    while let Some((at, exchange)) = stream.next(Duration::from_secs(10)) {
        assert!(exchange.ok, "the stream broke: {exchange:?}\nnode 1:\n{}\nnode 2:\n{}", agents[0].log_tail(20), agents[1].log_tail(20));
        exchanges.push(exchange);
        if at > rotated + Duration::from_secs(4) {
            break;
        }
    }
    let n = exchanges.iter().map(|e| e.n).max().unwrap_or(0);
    eprintln!("serials seen (node 1 {web}, node 2 {echo_id}): {seen:?}; {n} exchanges on one connection");
    assert!(n >= 30 && exchanges.len() as u64 == n, "the stream did not keep exchanging: {n} exchanges, {} received", exchanges.len());

    // New TLS connections present node 2's current server certificate ...
    let files = TestSigner::of_mesh_ca(&ca).unwrap().issue(&web, Validity::Fresh(Duration::from_secs(600))).unwrap();
    let files = files.write(&bed.scratch_dir().join("probe-certs"), "web").unwrap();
    let pod = SocketAddr::new(echo.ipv4.into(), ECHO_TCP_PORT);
    let current = held_serial(&agents[1], &echo_id).unwrap();
    let report = probe_client(&bed, 1, &tls_args(hbone_addr(&bed, 2), &sni("server", "echo"), files, pod));
    let after = held_serial(&agents[1], &echo_id).unwrap();
    let served = report.server_serial.clone().unwrap_or_default();
    assert!(served == current || served == after, "node 2 presented {served}, holds {current} / {after}: {report:?}");
    assert!(!seen[1][..seen[1].len() - 1].contains(&served), "node 2 presented an old certificate: {served} in {:?}", seen[1]);

    // ... and node 1's new tunnel connections (a new caller pod) its current client certificate.
    let client2 = bed.add_pod(PodSpec::new("mesh-a", "client-2").serve(false).service_account("web").on_node(1)).unwrap();
    agents[0].wait_enrolled("mesh-a", "client-2", Duration::from_secs(5)).unwrap();
    let current = held_serial(&agents[0], &web).unwrap();
    let out = client2.run_client(&ClientRequest::tcp("echo.server:9090", "new-connection").timeout(Duration::from_secs(5))).unwrap();
    let after = held_serial(&agents[0], &web).unwrap();
    assert_eq!(out.only().body_text, "new-connection", "{out:#?}");
    let logged = poll(Duration::from_secs(5), || inbound_lines(&agents[1], &client2).into_iter().next())
    .unwrap_or_else(|| panic!("node 2 logged no inbound stream:\n{}", agents[1].log_tail(20)));
    let new_serial = logged["source_certificate_serial"].as_str().unwrap_or_default().to_string();
    assert!(new_serial == current || new_serial == after, "node 1's new tunnel presented {new_serial}, it holds {current} / {after}: {logged}");
    assert_ne!(new_serial, first_client_serial, "a new tunnel presented the first certificate");

    // The long-lived stream ends cleanly and kept the certificate its tunnel was made with.
    drop(stream_stdin(stream));
    let long = poll(Duration::from_secs(10), || inbound_lines(&agents[1], &client).into_iter().next())
        .unwrap_or_else(|| panic!("node 2 did not log the long-lived stream:\n{}", agents[1].log_tail(20)));
    let serial = long["source_certificate_serial"].as_str().unwrap_or_default();
    eprintln!("long-lived stream's tunnel presented {serial}; a new tunnel presented {new_serial}");
    assert!(serial == first_client_serial || serial == client_serial_at_start, "the long-lived stream's tunnel: {long}");
    assert!(long["bytes_received"].as_u64().unwrap_or(0) >= 30 * 10, "{long}");
}

/// `agent`'s `hbone_inbound` access log lines of tunnels from `caller` (the tunnel's
/// TCP connection carries the caller pod's address) to the echo pod's TCP port.
fn inbound_lines(agent: &RunningAgent, caller: &Pod) -> Vec<serde_json::Value> {
    let from = format!("{}:", caller.ipv4);
    let to = format!(":{ECHO_TCP_PORT}");
    agent
        .access_log()
        .into_iter()
        .filter(|e| e["kind"] == "hbone_inbound")
        .filter(|e| e["client"].as_str().is_some_and(|c| c.starts_with(&from)))
        .filter(|e| e["backend"].as_str().is_some_and(|b| b.ends_with(&to)))
        .collect()
}

/// Closes the stream's standard input (it then ends cleanly) and waits for its exit.
fn stream_stdin(mut stream: Lines<Exchange>) -> Vec<Exchange> {
    drop(stream.child.stdin.take());
    let mut rest = vec![];
    while let Some((_, exchange)) = stream.next(Duration::from_secs(10)) {
        let last = exchange.n == 0;
        rest.push(exchange);
        if last {
            break;
        }
    }
    assert!(rest.last().is_some_and(|e| e.n == 0 && e.ok), "the stream did not end cleanly: {rest:?}");
    rest
}
