//! Standalone mode: serve the mesh from a directory of Kubernetes manifests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::endpoints::Endpoints;
use crate::logging::LogControl;
use crate::manifests;
use crate::node::{Node, NodeOptions};

/// How often the manifests directory is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Runs the control plane (manifests watch, translation, admin API) on the calling
/// runtime; the proxy listeners are served on `data_path`.
pub async fn run(
    dir: PathBuf,
    options: NodeOptions,
    logs: LogControl,
    data_path: crate::data_runtime::DataPath,
) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("manifests directory {} does not exist", dir.display());
    }
    let shutdown = CancellationToken::new();
    let endpoints = Endpoints::bind(&options, data_path.first()).await?;
    let node = Node::start(options, &data_path, shutdown.clone()).await?;
    endpoints.serve(Arc::new(Admin { node: node.clone(), logs: Some(logs) }), data_path.first(), &shutdown)?;

    let mut loaded = manifests::watch_dir(dir, POLL_INTERVAL);
    let mut pending = node.apply(&loaded.borrow_and_update().state)?;
    let mut retry = tokio::time::interval(crate::node::CGROUP_RETRY);
    let mut termination = crate::node::Termination::new()?;
    loop {
        tokio::select! {
            changed = loaded.changed() => {
                if changed.is_err() { break; }
                let current = loaded.borrow_and_update().clone();
                pending = node.apply_logged(&current.state, pending);
            }
            _ = retry.tick(), if pending > 0 => {
                if node.retry_due() {
                    let current = loaded.borrow().clone();
                    pending = node.apply_logged(&current.state, pending);
                }
            }
            _ = termination.requested() => break,
        }
    }
    // Stop accepting and let open connections finish within the drain period. The
    // redirect hooks stay attached: new connections fail fast with "connection refused"
    // until an agent listens again (never bypassing the mesh, never hanging).
    shutdown.cancel();
    node.drained().await;
    Ok(())
}
