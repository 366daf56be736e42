//! `cargo xtask demo`: Ambit's main job on a local test bed, in plain words.
//!
//! Builds the agent and the test-bed helper, brings up a node (its own network
//! namespace, no route out) with pods from the example manifests (`examples/demo.yaml`
//! is embedded; `--manifests FILE` uses another), starts `ambit-agent standalone` there
//! with real eBPF redirection, makes requests from pods, says what happened to each,
//! and tears everything down. Then a second bed with two nodes and the mesh on shows a
//! cross-node call, its identities and its encryption ([`crate::demo_mesh`]). Needs root.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use ambit_e2e::{AgentOptions, ClientRequest, Pod, RunningAgent, TestBed};
use anyhow::{bail, Context};

const DEMO_MANIFESTS: &str = include_str!("../../examples/demo.yaml");

#[derive(clap::Args)]
pub struct Args {
    /// Manifests to run instead of the embedded examples/demo.yaml.
    #[arg(long)]
    manifests: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo needs root (eBPF, cgroups, network namespaces)");
    }
    let root = crate::ebpf::repo_root();
    println!("==> building ambit-agent and the test bed");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&root)
        .args(["build", "-p", "ambit-agent", "-p", "ambit-e2e", "--bins"])
        .status()?;
    if !status.success() {
        bail!("build failed");
    }
    let manifests = match &args.manifests {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => DEMO_MANIFESTS.to_owned(),
    };

    println!("==> bringing up a test bed (a node namespace with no route out, one namespace per pod)");
    let bed = TestBed::new()?;
    bed.apply_yaml(&manifests)?;
    for pod in bed.pods() {
        println!("    pod {}/{} at {}", pod.namespace, pod.name, pod.ipv4);
    }
    println!("==> starting ambit-agent standalone on the node");
    let agent = RunningAgent::start(&bed, &AgentOptions { access_log: true, ..AgentOptions::default() })?;
    let dump = agent.config_dump()?;
    let enrolled: Vec<String> = dump["config"]["workloads"]
        .as_array()
        .map(|ws| ws.iter().map(|w| format!("{}/{}", w["namespace"].as_str().unwrap_or(""), w["name"].as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    println!("    enrolled pods (their cgroups are in the connect hooks' map): {}", enrolled.join(", "));
    println!("    route status:");
    for route in dump["routeStatus"].as_array().into_iter().flatten() {
        for parent in route["parents"].as_array().into_iter().flatten() {
            let conditions: Vec<String> = parent["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{}={} ({})", c["type"].as_str().unwrap_or(""), c["status"].as_str().unwrap_or(""), c["reason"].as_str().unwrap_or("")))
                .collect();
            println!(
                "      {} {}/{} -> Service {}: {}",
                route["kind"].as_str().unwrap_or(""),
                route["namespace"].as_str().unwrap_or(""),
                route["name"].as_str().unwrap_or(""),
                parent["parentRef"]["name"].as_str().unwrap_or(""),
                conditions.join(", ")
            );
        }
    }

    if args.manifests.is_none() {
        narrate_default(&bed, &agent)?;
    } else {
        println!("==> custom manifests: the agent is serving them; see the route status above");
    }
    println!("==> tearing down (agent stopped, eBPF programs detached, namespaces and cgroups removed)");
    drop(agent);
    drop(bed);
    crate::demo_mesh::run()?;
    println!("done");
    Ok(())
}

fn pod(bed: &TestBed, namespace: &str, app: &str) -> anyhow::Result<Pod> {
    bed.first_pod(namespace, &[("app", app)])
}

/// What the proxy logged for the connection whose client address is `local`.
fn proxy_saw(agent: &RunningAgent, local: &str) -> Option<serde_json::Value> {
    for _ in 0..50 {
        if let Some(e) = agent.access_log().into_iter().find(|e| e["kind"] == "http" && e["client"] == local) {
            return Some(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

fn one(bed: &TestBed, agent: &RunningAgent, from: &Pod, url: &str, what: &str) -> anyhow::Result<()> {
    println!("\n--- {what}");
    println!("    {}/{} calls {url}", from.namespace, from.name);
    let out = from.run_client(&ClientRequest::http(url).timeout(std::time::Duration::from_secs(2)))?;
    let r = out.only();
    if let Some(error) = &r.error {
        println!("    not redirected: the connection went to the cluster IP itself, and this bed has no kube-proxy");
        println!("    so it failed ({error}); Ambit never saw it");
        let _ = bed;
        return Ok(());
    }
    let local = r.local_addr.clone().unwrap_or_default();
    match proxy_saw(agent, &local) {
        Some(e) => {
            println!("    redirected by the connect hook into the node proxy; getpeername() still shows {}", r.peer_addr.as_deref().unwrap_or("?"));
            println!(
                "    the proxy identified the caller from the kernel: {}/{} (dialled {})",
                e["caller_namespace"].as_str().unwrap_or(""),
                e["caller_pod"].as_str().unwrap_or(""),
                e["dialled"].as_str().unwrap_or("")
            );
            let route = e["route"].as_str().unwrap_or("");
            if route.is_empty() {
                println!("    no routes apply to this caller: plain load balancing to the Service's endpoints");
            } else {
                println!("    route: {route}, rule {}", e["rule"].as_str().unwrap_or(""));
            }
        }
        None => println!("    not redirected: the connection went straight to the pod; the proxy has no record of {local}"),
    }
    println!(
        "    answered {} by {}{}",
        r.status.unwrap_or(0),
        r.echo_pod().unwrap_or("the proxy itself"),
        r.header("x-routed-by").map(|v| format!(", x-routed-by: {v}")).unwrap_or_default()
    );
    let consumer = r.echo_request_header("x-consumer");
    if !consumer.is_empty() {
        println!("    the backend received x-consumer: {}", consumer.join(","));
    }
    Ok(())
}

fn narrate_default(bed: &TestBed, agent: &RunningAgent) -> anyhow::Result<()> {
    let web = pod(bed, "frontend", "web")?;
    let cart = pod(bed, "checkout", "cart")?;
    let batch = pod(bed, "legacy", "batch")?;
    one(bed, agent, &web, "http://catalog.shop/items", "a caller in frontend: the consumer route (frontend's own) replaces the producer route")?;
    one(bed, agent, &cart, "http://catalog.shop/v2/items", "a caller in checkout: the producer route applies, rule v2-api")?;

    println!("\n--- a caller in checkout, 100 requests: the producer route's 90/10 split");
    let out = cart.run_client(&ClientRequest::http("http://catalog.shop/items").count(100).concurrency(4))?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &out.results {
        let pod = r.echo_pod().unwrap_or("error");
        let backend = pod.rsplitn(3, '-').last().unwrap_or(pod).to_owned();
        *counts.entry(backend).or_default() += 1;
    }
    for (backend, n) in counts {
        println!("    {backend}: {n}");
    }

    one(bed, agent, &batch, "http://catalog.shop/items", "a caller in legacy (namespace not labelled ambit.dev/mesh=enabled)")?;
    let v1 = pod(bed, "shop", "catalog")?;
    one(bed, agent, &cart, &format!("http://{}:8080/direct", v1.ipv4), "a pod-IP call (not a Service): never redirected")?;
    let counters = agent.redirect_dump()?;
    println!("\n--- eBPF counters: {}", counters["counters"]);
    Ok(())
}
