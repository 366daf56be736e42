//! The signer publishes the mesh directory ([`crate::directory`]): it watches Pods
//! cluster-wide anyway, and it is the only writer of `MeshNode` objects that agents
//! trust (they are written with its service account only).
//!
//! The directory's [`Publisher`] runs its own (trimmed) Pod watch, next to the
//! controller's: the two consumers keep different state, and the API server serves
//! two watches from one cache.

use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;

use super::rbac;
use crate::directory::Publisher;

/// Reads the `MeshNode`s published before (retrying until the API server serves them,
/// e.g. until the CRD is installed), then keeps them equal to the cluster's Pods until
/// `stop`.
pub async fn publish(client: Client, debounce: Duration, stop: CancellationToken) {
    let mut pause = Duration::from_millis(200);
    let publisher = loop {
        match Publisher::start(client.clone()).await {
            Ok(publisher) => break publisher,
            Err(error) => tracing::warn!(
                %error,
                "listing MeshNodes for the mesh directory (needs the CRD daemonset/crds/meshnodes.yaml and {}); retrying",
                rbac::MESH_NODES_LIST
            ),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    };
    tracing::info!("publishing the mesh directory (MeshNode objects)");
    publisher.run(client, debounce, stop).await;
}
