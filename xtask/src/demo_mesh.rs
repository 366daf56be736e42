//! `cargo xtask demo`, cross-node part: a two-node bed with the mesh on (a CA made by
//! `ambit-agent ca init`, one agent per node with `--ca-dir`). A pod on node 1 calls a
//! Service whose pod is on node 2; the demo prints who called, which identities each
//! side presented and verified (both agents' access logs and certificate dumps), and
//! what a capture of the cluster network between the nodes saw.

use std::time::{Duration, Instant, UNIX_EPOCH};

use ambit_e2e::{AgentOptions, BedOptions, ClientRequest, MeshCa, PodSpec, RunningAgent, TestBed};
use anyhow::{bail, Context, Result};
use serde_json::Value;

const HBONE_PORT: u16 = ambit_e2e::capture::HBONE_PORT;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: frontend, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  selector: {app: catalog}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
"#;

/// Polls `f` every 50 ms until it gives Some or `limit` passes.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The valid certificates an agent holds: (identity, serial, seconds left).
fn certificates(agent: &RunningAgent) -> Vec<(String, String, u64)> {
    let dump = agent.config_dump().unwrap_or_default();
    let now = UNIX_EPOCH.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    dump["certificates"]["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["state"] == "valid")
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("?").to_owned();
            (s("identity"), s("serial"), c["not_after"].as_u64().unwrap_or(0).saturating_sub(now))
        })
        .collect()
}

fn print_certificates(agent: &RunningAgent) {
    for (identity, serial, left) in certificates(agent) {
        println!("      {identity} (serial {serial}, expires in {}h{:02}m)", left / 3600, left % 3600 / 60);
    }
}

fn wait_for_certificate(agent: &RunningAgent, identity: &str) -> Result<()> {
    poll(Duration::from_secs(15), || certificates(agent).iter().any(|c| c.0 == identity).then_some(()))
        .with_context(|| format!("node {} holds no certificate for {identity}:\n{}", agent.node(), agent.log_tail(20)))
}

/// The first access-log line of `agent` that `pick` accepts, waiting up to 5 s.
fn logged(agent: &RunningAgent, pick: impl Fn(&Value) -> bool) -> Option<Value> {
    poll(Duration::from_secs(5), || agent.access_log().into_iter().find(|e| pick(e)))
}

pub fn run() -> Result<()> {
    println!("\n==> the mesh across nodes: two nodes joined by a cluster network (a bridge namespace), one agent each");
    let bed = TestBed::with_options(BedOptions { nodes: 2, ..Default::default() })?;
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca"))?;
    println!("    ambit-agent ca init: a local CA for trust domain {}", ambit_e2e::mesh_ca::TRUST_DOMAIN);
    bed.apply_yaml(MANIFESTS)?;
    let server = bed.add_pod(PodSpec::new("shop", "catalog-0").label("app", "catalog").service_account("catalog").on_node(2))?;
    let client = bed.add_pod(PodSpec::new("frontend", "web-0").serve(false).service_account("web").on_node(1))?;
    println!("    node 1: pod frontend/web-0 at {} (service account web)", client.ipv4);
    println!("    node 2: pod shop/catalog-0 at {} (service account catalog), behind Service shop/catalog", server.ipv4);
    let options = AgentOptions { access_log: true, extra_args: ca.agent_args(), ..AgentOptions::default() };
    let agents = RunningAgent::start_all(&bed, &options)?;
    agents[0].wait_enrolled("frontend", "web-0", Duration::from_secs(10))?;
    let spiffe = |ns: &str, sa: &str| format!("spiffe://{}/ns/{ns}/sa/{sa}", ambit_e2e::mesh_ca::TRUST_DOMAIN);
    wait_for_certificate(&agents[0], &spiffe("frontend", "web"))?;
    wait_for_certificate(&agents[1], &spiffe("shop", "catalog"))?;
    println!("    each agent holds certificates only for the identities of its own pods (/config_dump):");
    for agent in &agents {
        println!("    node {}:", agent.node());
        print_certificates(agent);
    }

    let marker = format!("demo-secret-{}", std::process::id());
    println!("\n--- frontend/web-0 on node 1 calls http://catalog.shop/{marker}, with a capture on the cluster network");
    let capture = bed.capture(Duration::from_secs(30))?;
    let out = client.run_client(&ClientRequest::http(format!("http://catalog.shop/{marker}")).timeout(Duration::from_secs(5)))?;
    let captured = capture.finish()?;
    let r = out.only();
    if r.status != Some(200) {
        bail!("the cross-node call failed: {out:?}\nnode 1:\n{}\nnode 2:\n{}", agents[0].log_tail(20), agents[1].log_tail(20));
    }
    println!("    answered {} by {}", r.status.unwrap_or(0), r.echo_pod().unwrap_or("?"));
    narrate_identities(&agents, &marker, &spiffe("frontend", "web"))?;
    narrate_capture(&captured, &marker);
    println!("==> tearing down the two-node bed");
    drop(agents);
    drop(bed);
    Ok(())
}

fn narrate_identities(agents: &[RunningAgent], marker: &str, caller: &str) -> Result<()> {
    let path = format!("/{marker}");
    let out = logged(&agents[0], |e| e["kind"] == "http" && e["path"] == path.as_str())
        .with_context(|| format!("node 1 logged no request:\n{}", agents[0].log_tail(20)))?;
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or("?").to_owned();
    println!(
        "    node 1 (caller's side): caller {}/{} → Service {}; tunnel: {}",
        s(&out, "caller_namespace"),
        s(&out, "caller_pod"),
        s(&out, "dialled"),
        s(&out, "tunnel")
    );
    println!("      presented the caller's identity   {}", s(&out, "source_identity"));
    println!("      required of node 2 (secure naming) {}", s(&out, "destination_identity"));
    println!("    node 2 (callee's side): terminated mutual TLS on port {HBONE_PORT}, verified the chain, the trust domain and the SAN");
    let (status, metrics) = agents[1].admin("GET", "/metrics")?;
    let inbound: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("ambit_hbone_streams_total{") && l.contains("direction=\"inbound\""))
        .collect();
    if status != 200 || inbound.is_empty() {
        bail!("node 2 counted no inbound HBONE stream (/metrics {status}):\n{}", agents[1].log_tail(20));
    }
    println!("      its inbound streams, by the caller's verified identity (/metrics):");
    for line in inbound {
        println!("      {line}");
    }
    // The proxy keeps the upstream HTTP connection (one stream) for the next request, so
    // the inbound access-log line (written when the stream ends) may still be pending.
    if let Some(e) = agents[1].access_log().into_iter().find(|e| e["kind"] == "hbone_inbound" && e["source_identity"] == caller) {
        println!("      access log: caller {} → {} presented {}", s(&e, "source_identity"), s(&e, "backend"), s(&e, "destination_identity"));
    }
    Ok(())
}

fn narrate_capture(captured: &ambit_e2e::Captured, marker: &str) {
    println!("    the capture between the nodes:");
    println!(
        "      {} bytes of TCP payload on port {HBONE_PORT} (HBONE), in {} connection(s), {} TLS ClientHello(s)",
        captured.tcp_payload_bytes(HBONE_PORT),
        captured.connections_to(HBONE_PORT),
        captured.tls_client_hellos_to(HBONE_PORT)
    );
    let other: u64 = captured.tcp_ports_with_payload().iter().filter(|((a, b), _)| *a != HBONE_PORT && *b != HBONE_PORT).map(|(_, n)| n).sum();
    println!("      {other} bytes of TCP payload on any other port");
    if captured.contains(marker.as_bytes()) {
        println!("      the request's path {marker:?} WAS seen in plaintext");
    } else {
        println!("      the request's path {marker:?} appears nowhere in the capture: the bytes between the nodes were encrypted");
    }
}
