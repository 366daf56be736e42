//! The mesh across nodes on the multi-node bed, with real agents and real eBPF: workload
//! certificates from a CA made by `ambit-agent ca init`, HBONE (HTTP/2 CONNECT over
//! mutual TLS 1.3) between node proxies, identities in logs, metrics and dumps, and
//! a capture of the cluster network. Needs root; fails (never skips) without it.

mod support;

use std::time::Duration;

use ambit_e2e::{AgentOptions, ClientRequest, MeshCa, PodSpec, RunningAgent, Wire};
use support::mesh::{held_identities, spiffe};
use support::{call_ok, multi_node_bed, poll};

const ECHO_HTTP_PORT: u16 = ambit_e2e::echo_server::HTTP_PORT;
const HBONE_PORT: u16 = ambit_e2e::capture::HBONE_PORT;

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
metadata: {name: echo-v2, namespace: server}
spec:
  selector: {app: echo, version: v2}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: by-header, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: echo-v2, port: 80}]
  - backendRefs: [{name: echo, port: 80}]
"#;


/// Agents with the mesh on (certificates from `ca`) and access logs on.
fn mesh_options(ca: &MeshCa) -> AgentOptions {
    AgentOptions { access_log: true, extra_args: ca.agent_args(), ..AgentOptions::default() }
}





#[test]
fn cross_node_calls_are_encrypted_and_carry_the_callers_identity() {
    let bed = multi_node_bed(2);
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca")).unwrap();
    bed.apply_yaml(SERVICES).unwrap();
    bed.add_pod(PodSpec::new("server", "echo-0").label("app", "echo").label("version", "v1").service_account("echo").on_node(2))
        .unwrap();
    bed.add_pod(PodSpec::new("server", "echo-v2-0").label("app", "echo").label("version", "v2").service_account("echo-v2").on_node(2))
        .unwrap();
    let options = mesh_options(&ca);
    let agents = RunningAgent::start_all(&bed, &options).unwrap();
    let client = bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).service_account("web").on_node(1)).unwrap();
    agents[0].wait_enrolled("mesh-a", "client-1", Duration::from_secs(5)).unwrap();
    support::mesh::wait_for_certificates(&agents[0], &[spiffe("mesh-a", "web")], Duration::from_secs(10));
    support::mesh::wait_for_certificates(&agents[1], &[spiffe("server", "echo"), spiffe("server", "echo-v2")], Duration::from_secs(10));
    assert!(!held_identities(&agents[0]).contains(&spiffe("server", "echo")), "node 1 holds an identity of node 2's pods");
    // The dump shows each certificate's serial and validity, never a key.
    let dump = agents[1].config_dump().unwrap();
    let certificate = &dump["certificates"]["certificates"][0];
    assert!(certificate["serial"].as_str().is_some_and(|s| !s.is_empty()) && certificate["not_after"].is_u64(), "{certificate}");
    let text = dump.to_string();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("\"key\""), "the dump holds key material");

    // HTTP routed on the caller's side (GAMMA), tunnelled to node 2, on a wire that
    // shows none of the request.
    let marker = format!("mesh-{}", std::process::id());
    let capture = bed.capture(Duration::from_secs(30)).unwrap();
    let r = call_ok(&client, ClientRequest::http(format!("http://echo.server/{marker}")).header("x-version", "v2"), &agents);
    let captured = capture.finish().unwrap();
    assert_eq!(r.echo_pod(), Some("echo-v2-0"), "the consumer-side route applies: {r:?}");
    if let Err(e) = captured.check_wire(marker.as_bytes(), ECHO_HTTP_PORT, Wire::Hbone) {
        panic!("{e:#}");
    }
    assert!(captured.tcp_payload_bytes(HBONE_PORT) > 0, "nothing crossed on the HBONE port");
    // The callee pod is reached from its own node's proxy (from the node side of its
    // veth): the caller's address does not cross the tunnel (README, "Mesh").
    assert_eq!(r.echo_caller_ip(), Some(ambit_e2e::bed::POD_GATEWAY_V4.to_string().as_str()), "{r:?}");

    // The client side logged the identities and the tunnel.
    let outbound = agents[0].access_log().into_iter().find(|e| e["kind"] == "http" && e["path"] == format!("/{marker}").as_str());
    let outbound = outbound.unwrap_or_else(|| panic!("node 1 logged no request:\n{}", agents[0].log_tail(30)));
    assert_eq!((outbound["tunnel"].as_str(), outbound["source_identity"].as_str()), (Some("hbone"), Some(spiffe("mesh-a", "web").as_str())));
    assert_eq!(outbound["destination_identity"], spiffe("server", "echo-v2").as_str(), "{outbound}");
    let (status, metrics) = agents[1].admin("GET", "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l.starts_with("ambit_hbone_streams_total{") && l.contains("direction=\"inbound\"") && l.contains("source_service_account=\"web\"")),
        "{metrics}"
    );

    // Opaque TCP crosses the tunnel too.
    let capture = bed.capture(Duration::from_secs(30)).unwrap();
    let tcp_marker = format!("tcp-{}", std::process::id());
    let r = call_ok(&client, ClientRequest::tcp("echo.server:9090", tcp_marker.clone()), &agents);
    let captured = capture.finish().unwrap();
    assert_eq!(r.body_text, tcp_marker, "{r:?}");
    assert!(!captured.contains(tcp_marker.as_bytes()), "TCP plaintext crossed the cluster network");
    // The server side recorded the caller's verified SPIFFE ID (logged when the stream ends).
    let inbound = poll(Duration::from_secs(5), || {
        agents[1].access_log().into_iter().find(|e| {
            e["kind"] == "hbone_inbound" && e["source_identity"] == spiffe("mesh-a", "web").as_str() && e["backend"].as_str().is_some_and(|b| b.ends_with(":9090"))
        })
    });
    let inbound = inbound.unwrap_or_else(|| panic!("node 2 logged no inbound stream from the caller:\n{}", agents[1].log_tail(30)));
    assert!(inbound["destination_identity"].as_str().is_some_and(|d| d.starts_with(&spiffe("server", "echo"))), "{inbound}");

    // Many calls share tunnel connections: no TLS handshake per call. The 20 calls go
    // over the client's keep-alive connection(s); one of node 1's workers serves each
    // client connection and keeps its own tunnels (ARCHITECTURE.md, "Threads"), one per
    // callee identity (echo and echo-v2 both back `echo`): at most two handshakes per
    // client connection, whichever worker serves it.
    let capture = bed.capture(Duration::from_secs(30)).unwrap();
    let out = client.run_client(&ClientRequest::http("http://echo.server/many").count(20).timeout(Duration::from_secs(5))).unwrap();
    let captured = capture.finish().unwrap();
    assert!(out.results.iter().all(|r| r.status == Some(200)), "{out:#?}");
    let connections = out.results.iter().map(|r| r.connection).collect::<std::collections::BTreeSet<_>>().len();
    let hellos = captured.tls_client_hellos_to(HBONE_PORT);
    assert!(hellos <= 2 * connections, "a TLS handshake per call: {hellos} for 20 calls over {connections} connection(s)");
}

#[test]
fn same_node_calls_carry_the_callers_identity_in_process() {
    let bed = multi_node_bed(2);
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca")).unwrap();
    bed.apply_yaml(SERVICES).unwrap();
    bed.add_pod(PodSpec::new("server", "echo-0").label("app", "echo").service_account("echo").on_node(1)).unwrap();
    let agents = RunningAgent::start_all(&bed, &mesh_options(&ca)).unwrap();
    let client = bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).service_account("web").on_node(1)).unwrap();
    agents[0].wait_enrolled("mesh-a", "client-1", Duration::from_secs(5)).unwrap();
    support::mesh::wait_for_certificates(&agents[0], &[spiffe("mesh-a", "web"), spiffe("server", "echo")], Duration::from_secs(10));
    let capture = bed.capture(Duration::from_secs(30)).unwrap();
    let r = call_ok(&client, ClientRequest::http("http://echo.server/local"), &agents);
    let captured = capture.finish().unwrap();
    assert_eq!(r.echo_caller_ip(), Some(client.ipv4.to_string().as_str()), "same node: the caller's address is kept: {r:?}");
    assert_eq!(captured.tcp_payload_bytes(HBONE_PORT), 0, "a same-node call left the node");
    let line = poll(Duration::from_secs(5), || {
        agents[0].access_log().into_iter().find(|e| e["kind"] == "http" && e["path"] == "/local")
    })
    .unwrap_or_else(|| panic!("no access log line:\n{}", agents[0].log_tail(30)));
    assert_eq!((line["tunnel"].as_str(), line["source_identity"].as_str()), (Some("local"), Some(spiffe("mesh-a", "web").as_str())), "{line}");
}

#[test]
fn calls_come_back_within_two_seconds_when_the_callee_nodes_agent_restarts() {
    let bed = multi_node_bed(2);
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca")).unwrap();
    bed.apply_yaml(SERVICES).unwrap();
    bed.add_pod(PodSpec::new("server", "echo-0").label("app", "echo").service_account("echo").on_node(2)).unwrap();
    let options = mesh_options(&ca);
    let mut agents = RunningAgent::start_all(&bed, &options).unwrap();
    let client = bed.add_pod(PodSpec::new("mesh-a", "client-1").serve(false).service_account("web").on_node(1)).unwrap();
    agents[0].wait_enrolled("mesh-a", "client-1", Duration::from_secs(5)).unwrap();
    support::mesh::wait_for_certificates(&agents[1], &[spiffe("server", "echo")], Duration::from_secs(10));
    // Pooled tunnel connections and upstream connections exist before the restart.
    let out = client.run_client(&ClientRequest::http("http://echo.server/before").count(5).timeout(Duration::from_secs(5))).unwrap();
    assert!(out.results.iter().all(|r| r.status == Some(200)), "{out:#?}");

    agents[1].stop().unwrap();
    // With the callee's node proxy gone, a call ends promptly (an error or 503), never hangs.
    let started = std::time::Instant::now();
    let down = client.run_client(&ClientRequest::http("http://echo.server/down").timeout(Duration::from_secs(20))).unwrap();
    let took = started.elapsed();
    assert!(down.results.iter().all(|r| r.status != Some(200)), "answered with node 2's agent stopped: {down:#?}");
    assert!(took < Duration::from_secs(7), "a call to a node without its agent took {took:?}");

    agents[1].restart(&bed, &options).unwrap();
    let back = support::wait_until(Duration::from_secs(2), || support::get(&client, "http://echo.server/after") == Ok(200));
    assert!(
        back.is_some(),
        "calls did not work again within 2 s of node 2's agent being ready:\nnode 1:\n{}\nnode 2:\n{}",
        agents[0].log_tail(30),
        agents[1].log_tail(30)
    );
}
