//! Proof that a system under comparison does what it claims before it is measured:
//! one request with a marker in its path, captured on the cluster bridge, must cross
//! between the nodes only as TLS on the HBONE port (15008), never in plaintext; and
//! ztunnel must report the client's and the server's SPIFFE identities.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ambit_e2e::{TestBed, Wire};
use anyhow::{bail, Context, Result};

use super::super::loadgen::ambit_load_in;
use super::measure::{Ctx, Subject};
use super::ztunnel::ZtunnelBed;

/// The echo server's HTTP port (what a plaintext call would show on the wire).
const ECHO_HTTP_PORT: u16 = 8080;

/// One request from `s`'s client with a unique marker, captured between the nodes.
pub fn crosses_as_hbone(bed: &TestBed, s: &Subject, ctx: &Ctx) -> Result<()> {
    let marker = format!("peers-{}-{:?}", std::process::id(), s.system);
    let path = format!("/{marker}");
    let capture = bed.capture(Duration::from_secs(30))?;
    let addr = s.http.to_string();
    let sent = ambit_load_in(&s.client, s.cpu, ctx.load_bin, &["rate", "--addr", &addr, "--path", &path, "--rate", "1", "--requests", "1", "--connections", "1"]);
    let captured = capture.finish()?;
    let v = sent?;
    if v["errors"].as_u64() != Some(0) {
        bail!("the marked request failed: {v}");
    }
    captured.check_wire(marker.as_bytes(), ECHO_HTTP_PORT, Wire::Hbone).with_context(|| s.system.label().to_string())
}

/// Polls node `node`'s ztunnel metrics (from inside its own netns) until they hold `needle`.
fn metrics_show(bed: &TestBed, zt: &ZtunnelBed, node: usize, load_bin: &Path, needle: &str) -> Result<()> {
    let ns = zt.ztunnel_netns(node).context("no ztunnel on that node")?;
    let cgroup = zt.helper_cgroup(bed, node)?;
    std::fs::create_dir_all(&cgroup)?;
    let out = std::process::Command::new(ambit_e2e::binaries::ambit_pod()?)
        .arg("--cgroup")
        .arg(&cgroup)
        .arg("--netns")
        .arg(ns)
        .args(["exec", "--", "timeout", "--signal=KILL", "30s"])
        .arg(load_bin)
        .args(["watch", "--addr", "127.0.0.1:15020", "--path", "/metrics", "--expect", needle, "--timeout-ms", "10000"])
        .stdin(Stdio::null())
        .output()
        .context("polling ztunnel's metrics")?;
    if !out.status.success() {
        bail!("node {node}'s ztunnel metrics never showed {needle}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// ztunnel's side: HBONE on the wire, and both ztunnels saw the mTLS identities.
pub fn ztunnel_mtls(bed: &TestBed, zt: &ZtunnelBed, s: &Subject, ctx: &Ctx) -> Result<()> {
    crosses_as_hbone(bed, s, ctx)?;
    let (client, server) = zt.identities();
    metrics_show(bed, zt, 1, ctx.load_bin, &format!("destination_principal=\"{server}\""))?;
    metrics_show(bed, zt, 2, ctx.load_bin, &format!("source_principal=\"{client}\""))
}
