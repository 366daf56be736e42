//! `ambit-agent signer`: the Kubernetes signer as its own small Deployment, the only
//! holder of the CA key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::identity::TrustDomain;
use tokio_util::sync::CancellationToken;

use super::controller::{self, SignerOptions, SignerStats};
use super::policy::Policy;
use super::signing::CaSigner;
use crate::kubernetes::client::{self, ApiServer};

/// The options of `ambit-agent signer`.
#[derive(clap::Args, Clone, Debug)]
pub struct SignerArgs {
    /// API server URL used without credentials (the in-test API server). Default:
    /// in-cluster config, then $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "AMBIT_API_SERVER", conflicts_with = "kubeconfig")]
    pub api_server: Option<String>,
    /// A kubeconfig file to use instead of the in-cluster configuration.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The CA directory (`ca.pem`, `ca-key.pem`): in a cluster, the mounted CA Secret.
    #[arg(long, env = "AMBIT_CA_DIR", default_value = "/etc/ambit/ca")]
    pub ca_dir: PathBuf,
    /// The SPIFFE trust domain of the identities signed.
    #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// The agents' namespace: their requests must come from a service account there, and
    /// the trust bundle ConfigMap is published there.
    #[arg(long, env = "AMBIT_AGENT_NAMESPACE", default_value = "ambit-system")]
    pub agent_namespace: String,
    /// The agents' service account (the only requester signed for).
    #[arg(long, env = "AMBIT_AGENT_SERVICE_ACCOUNT", default_value = "ambit-agent")]
    pub agent_service_account: String,
    /// The longest certificate lifetime signed; a longer `expirationSeconds` is shortened.
    #[arg(long, env = "AMBIT_MAX_CERT_LIFETIME", default_value = "24h", value_parser = crate::duration::parse_positive_duration)]
    pub max_cert_lifetime: Duration,
    /// How long a request waits for the signer to see its pod on the requester's node.
    #[arg(long, default_value = "10s", value_parser = crate::duration::parse_duration)]
    pub pod_grace: Duration,
    /// The mesh directory (`MeshNode` objects): after a Pod change, wait this long for
    /// more before writing (batches churn into fewer writes).
    #[arg(long, default_value = "200ms", value_parser = crate::duration::parse_duration)]
    pub directory_debounce: Duration,
    /// Serve `/metrics`, `/healthz` and `/ready` here (in the signer pod's network).
    #[arg(long, env = "AMBIT_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "AMBIT_LOG", default_value = "info")]
    pub log_level: String,
    /// Log as JSON lines.
    #[arg(long, env = "AMBIT_LOG_JSON")]
    pub log_json: bool,
}

impl SignerArgs {
    fn api_server(&self) -> ApiServer {
        match (&self.api_server, &self.kubeconfig) {
            (Some(url), _) => ApiServer::Url(url.clone()),
            (None, Some(path)) => ApiServer::Kubeconfig(path.clone()),
            (None, None) => ApiServer::Infer,
        }
    }

    /// The decision options these flags give.
    pub fn options(&self) -> anyhow::Result<SignerOptions> {
        let trust_domain = TrustDomain::new(&self.trust_domain)?;
        Ok(SignerOptions {
            policy: Policy::new(trust_domain, &self.agent_namespace, &self.agent_service_account, self.max_cert_lifetime),
            bundle_namespace: self.agent_namespace.clone(),
            pod_grace: self.pod_grace,
        })
    }
}

/// Runs the signer until SIGTERM or Ctrl-C.
pub async fn run(args: SignerArgs) -> anyhow::Result<()> {
    let options = args.options()?;
    let trust_domain = options.policy.trust_domain.clone();
    let signer = CaSigner::from_dir(&args.ca_dir, trust_domain, args.max_cert_lifetime)?;
    let client = client::client(&args.api_server()).await?;
    let stop = CancellationToken::new();
    let stats = Arc::new(SignerStats::default());
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding --metrics-addr {addr}: {e}"))?;
        tokio::spawn(super::endpoint::serve(listener, stats.clone(), stop.clone()));
    }
    let directory = tokio::spawn(super::directory::publish(client.clone(), args.directory_debounce, stop.clone()));
    let task = tokio::spawn(controller::serve(client, Arc::new(signer), options, stats, stop.clone()));
    crate::node::Termination::new()?.requested().await;
    stop.cancel();
    let _ = task.await;
    let _ = directory.await;
    Ok(())
}
