//! The agent's container image (`cargo xtask image`, `localhost/ambit-agent:test` or
//! `AMBIT_AGENT_IMAGE`) as a bed's node agent, set up as `daemonset/daemonset.yaml`
//! says (its capabilities, hostPath volumes, host network and PID, read-only root,
//! user, no privilege escalation: read from the manifest), passes a subset of the mesh
//! conformance cases in standalone mode.
//!
//! Needs root and podman/runc (`cargo xtask setup`) and the image: fails, never skips,
//! without them.

use ambit_e2e::conformance::case::conformance_dir;
use ambit_e2e::conformance::run::run_file;
use ambit_e2e::container::{self, capability_mask, daemonset_path, effective_capabilities};
use ambit_e2e::{AgentOptions, AgentPodSpec, RunningAgent, TestBed};
use anyhow::{bail, Context, Result};

/// The mesh namespaces of the base manifests, enrolled in the mesh.
const MESH_NAMESPACES: &[&str] = &["gateway-conformance-mesh", "gateway-conformance-mesh-consumer"];

/// The conformance subset: plain routing, a weighted split, a header filter.
const CASE_FILES: &[&str] = &["MeshBasic.yaml", "MeshHTTPRouteWeight.yaml", "MeshHTTPRouteRequestHeaderModifier.yaml"];

#[test]
fn the_image_runs_as_the_node_agent_with_the_daemonsets_setup_and_passes_conformance_cases() -> Result<()> {
    let spec = AgentPodSpec::from_daemonset(&daemonset_path())?;
    let dir = conformance_dir();
    let bed = TestBed::new()?;
    let base = std::fs::read_to_string(dir.join("base-manifests.yaml")).context("reading base-manifests.yaml")?;
    bed.apply_yaml(&base)?;
    for ns in MESH_NAMESPACES {
        bed.enroll_namespace(ns)?;
    }
    let agent = RunningAgent::start_container(&bed, &AgentOptions::default(), &spec, &container::image())?;
    let name = agent.container_name().context("the agent runs in no container")?;
    // Exactly the manifest's capabilities, no more (ALL dropped first).
    if spec.drop_caps.iter().any(|c| c == "ALL") {
        let expected = capability_mask(&spec.add_caps)?;
        let effective = effective_capabilities(name)?;
        if effective != expected {
            bail!("the agent's effective capabilities are {effective:#x}, the DaemonSet's are {expected:#x}");
        }
    }
    for file in CASE_FILES {
        let passed = run_file(&bed, &dir.join(file)).with_context(|| format!("agent log tail:\n{}", agent.log_tail(30)))?;
        if passed == 0 {
            bail!("{file} has no cases");
        }
        eprintln!("{file}: {passed} cases passed through the containerised agent");
    }
    // The requests went through the agent's proxy (not around it).
    let (_, metrics) = agent.admin("GET", "/metrics")?;
    let requests: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ambit_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    if requests < 500.0 {
        bail!("the agent counted {requests} requests, fewer than the cases sent");
    }
    eprintln!("the agent proxied {requests} requests");
    // Still serving (not crashed on the way).
    let (status, _) = agent.admin("GET", "/ready")?;
    if status != 200 {
        bail!("the agent answers /ready with {status}; log:\n{}", agent.log_tail(30));
    }
    Ok(())
}
