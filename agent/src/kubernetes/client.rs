//! Building the Kubernetes client: `--api-server URL` (plain HTTP, no authentication:
//! for the in-test API server), `--kubeconfig FILE`, or kube's default inference
//! (in-cluster ServiceAccount, then `$KUBECONFIG` / `~/.kube/config`).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Where to find the API server.
#[derive(Clone, Debug, Default)]
pub enum ApiServer {
    /// In-cluster configuration or the default kubeconfig.
    #[default]
    Infer,
    Kubeconfig(std::path::PathBuf),
    /// A URL used as is, without credentials.
    Url(String),
}

/// Connects (lazily: the first request dials).
pub async fn client(api_server: &ApiServer) -> anyhow::Result<Client> {
    // kube's rustls connector needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match api_server {
        ApiServer::Infer => Config::infer().await.map_err(|e| anyhow::anyhow!("finding the Kubernetes API server configuration: {e}"))?,
        ApiServer::Kubeconfig(path) => from_kubeconfig(path).await?,
        ApiServer::Url(url) => {
            let uri: http::Uri = url.parse().map_err(|e| anyhow::anyhow!("invalid --api-server URL {url:?}: {e}"))?;
            Config::new(uri)
        }
    };
    Client::try_from(config).map_err(|e| anyhow::anyhow!("creating the Kubernetes client: {e}"))
}

async fn from_kubeconfig(path: &Path) -> anyhow::Result<Config> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("using kubeconfig {}: {e}", path.display()))
}
