//! Standalone mode: serve the mesh from a directory of Kubernetes manifests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin};
use crate::logging::LogControl;
use crate::manifests;
use crate::node::{Node, NodeOptions};

/// How often the manifests directory is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

pub async fn run(dir: PathBuf, options: NodeOptions, logs: LogControl) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("manifests directory {} does not exist", dir.display());
    }
    let shutdown = CancellationToken::new();
    let admin_listener = admin::bind(options.admin_addr).await?;
    let admin_socket = options.admin_socket.clone();
    let node = Node::start(options, shutdown.clone()).await?;
    let admin_state = Arc::new(Admin { node: node.clone(), logs: Some(logs) });
    if let Some(path) = &admin_socket {
        admin::spawn_unix(admin_state.clone(), path, shutdown.clone())?;
    }
    tokio::spawn(admin::serve(admin_state, admin_listener, shutdown.clone()));

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
                let current = loaded.borrow().clone();
                pending = node.apply_logged(&current.state, pending);
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
