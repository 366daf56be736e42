//! `ambit-agent run`: the DaemonSet mode. Watches the API server into a
//! [`ClusterState`](crate::cluster::ClusterState), applies it to the node (debounced),
//! elects one status writer per cluster and writes route status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::{self, ApiServer};
use super::feed::{ClusterFeed, FeedOptions};
use super::lease::{self, LeaseConfig};
use super::mesh::MeshSettings;
use super::status;
use crate::admin::Admin;
use crate::endpoints::Endpoints;
use crate::logging::LogControl;
use crate::node::{Node, NodeOptions};


/// The Kubernetes options of `ambit-agent run`.
#[derive(clap::Args, Clone, Debug)]
pub struct KubeArgs {
    /// API server URL used without credentials (e.g. the in-test API server's
    /// http://127.0.0.1:PORT). Default: in-cluster config, then $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "AMBIT_API_SERVER", conflicts_with = "kubeconfig")]
    pub api_server: Option<String>,
    /// A kubeconfig file to use instead of the in-cluster configuration.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// This agent's pod name: its identity in the status-writer election (default: the node name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// This agent's namespace: where the status-writer Lease lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = "ambit-system")]
    pub pod_namespace: String,
    /// How long a status-writer Lease lasts without renewal.
    #[arg(long, default_value = "15s", value_parser = crate::duration::parse_duration)]
    pub lease_duration: Duration,
    /// How often the status writer renews its Lease.
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse_duration)]
    pub lease_renew: Duration,
    /// Never write route status (do not take part in the election).
    #[arg(long)]
    pub no_status: bool,
    /// Join the mesh across nodes: mutual TLS (HBONE) with workload certificates from the
    /// CertificateSigningRequest API. Explicit because it needs the ambit-signer
    /// Deployment: without it no certificate is ever issued and calls to mesh pods fail.
    #[arg(long, env = "AMBIT_MESH")]
    pub mesh: bool,
    /// With --mesh: how long to wait at start for the signer's trust bundle ConfigMap
    /// before exiting with an error (the DaemonSet restarts the agent).
    #[arg(long, default_value = "2m", value_parser = crate::duration::parse_positive_duration)]
    pub trust_bundle_wait: Duration,
}

impl KubeArgs {
    fn api_server(&self) -> ApiServer {
        match (&self.api_server, &self.kubeconfig) {
            (Some(url), _) => ApiServer::Url(url.clone()),
            (None, Some(path)) => ApiServer::Kubeconfig(path.clone()),
            (None, None) => ApiServer::Infer,
        }
    }
}

/// Runs the agent against the Kubernetes API until SIGTERM or Ctrl-C. The control plane
/// (watches, translation, status, admin API) runs on the calling runtime; the proxy
/// listeners on `data_path`.
pub async fn run(
    kube: KubeArgs,
    mut options: NodeOptions,
    mesh: Option<MeshSettings>,
    logs: LogControl,
    data_path: crate::data_runtime::DataPath,
) -> anyhow::Result<()> {
    if kube.lease_renew >= kube.lease_duration {
        anyhow::bail!("--lease-renew ({:?}) must be shorter than --lease-duration ({:?})", kube.lease_renew, kube.lease_duration);
    }
    let client = client::client(&kube.api_server()).await?;
    let mut _bundle_follower = None;
    if let Some(mesh) = mesh {
        let (mesh_options, follower) = mesh.start(client.clone(), &kube.pod_namespace).await?;
        tracing::info!(trust_domain = %mesh_options.trust_domain, lifetime = ?mesh_options.lifetime.get(), "mesh on: certificates from the CertificateSigningRequest API");
        options.mesh = Some(mesh_options);
        _bundle_follower = Some(follower);
    }
    let shutdown = CancellationToken::new();
    let endpoints = Endpoints::bind(&options, data_path.first()).await?;
    let node_name = options.node_name.clone();
    let node = Node::start(options, &data_path, shutdown.clone()).await?;
    endpoints.serve(Arc::new(Admin { node: node.clone(), logs: Some(logs) }), data_path.first(), &shutdown)?;

    let mut feed = ClusterFeed::start(client.clone(), FeedOptions { node_name: node_name.clone(), ..FeedOptions::default() });
    let (status_tx, status_rx) = watch::channel(Arc::new(status::Desired::default()));
    let status_stop = CancellationToken::new();
    let mut election = None;
    if !kube.no_status {
        let identity = kube.pod_name.clone().or(node_name).unwrap_or_else(|| "ambit-agent".to_string());
        let config = LeaseConfig {
            lease_duration: kube.lease_duration,
            renew_interval: kube.lease_renew,
            ..LeaseConfig::new(kube.pod_namespace.clone(), identity)
        };
        let (leading, task) = lease::spawn(client.clone(), config, status_stop.clone());
        tokio::spawn(status::run(client.clone(), leading, status_rx, status_stop.clone()));
        election = Some(task);
    }

    let mut current = None;
    let mut pending = 0;
    let mut retry = tokio::time::interval(crate::node::CGROUP_RETRY);
    let mut termination = crate::node::Termination::new()?;
    loop {
        tokio::select! {
            snapshot = feed.next() => {
                let Some(snapshot) = snapshot else { anyhow::bail!("the cluster feed stopped") };
                pending = node.apply_logged(&snapshot, pending);
                status_tx.send_replace(Arc::new(status::Desired::new(node.route_status(), &snapshot).with_policies(node.policy_status())));
                current = Some(snapshot);
            }
            _ = retry.tick(), if pending > 0 => {
                if let Some(state) = current.as_ref().filter(|_| node.retry_due()) {
                    pending = node.apply_logged(state, pending);
                }
            }
            _ = termination.requested() => break,
        }
    }
    // Hand the status Lease over first, then drain as standalone mode does (the hooks
    // stay attached; new connections are refused until an agent listens again).
    status_stop.cancel();
    if let Some(task) = election {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    shutdown.cancel();
    node.drained().await;
    Ok(())
}
