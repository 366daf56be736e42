//! Kubernetes mode's mesh (`ambit-agent run --mesh`): workload certificates from the
//! CertificateSigningRequest API, signed by Ambit's signer ([`crate::signer`]), and the
//! trust bundle the signer publishes in the ConfigMap
//! [`TRUST_BUNDLE_CONFIGMAP`](crate::signer::TRUST_BUNDLE_CONFIGMAP) of the agent's
//! namespace.
//!
//! The mesh is an explicit switch: without the signer Deployment every request would
//! wait for an answer that never comes, and every call to a mesh pod would fail closed.

use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::tls::TrustBundle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::csr_source::{CsrOptions, KubernetesCsr};
use super::trust_bundle::{watch_trust_bundle, TrustBundleWatch};
use crate::ca::CertSettings;
use crate::mesh::MeshOptions;
use crate::signer::TRUST_BUNDLE_CONFIGMAP;

/// The shortest certificate lifetime the API server signs for
/// (`spec.expirationSeconds` >= 600).
pub const MIN_LIFETIME: Duration = Duration::from_secs(600);

/// The checked settings of `--mesh`.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub certs: CertSettings,
    pub hbone_port: u16,
    /// How long the agent waits at start for the signer's trust bundle.
    pub bundle_wait: Duration,
}

impl MeshSettings {
    /// Refuses what Kubernetes mode cannot do: a lifetime under ten minutes, a local CA.
    pub fn new(certs: CertSettings, hbone_port: u16, bundle_wait: Duration) -> anyhow::Result<Self> {
        if certs.lifetime.get() < MIN_LIFETIME {
            anyhow::bail!(
                "--cert-lifetime {:?} is shorter than Kubernetes signs ({:?}: the API server's minimum expirationSeconds)",
                certs.lifetime.get(),
                MIN_LIFETIME
            );
        }
        if let Some(dir) = &certs.ca_dir {
            anyhow::bail!("--ca-dir ({}) is for standalone mode; with --mesh the ambit-signer Deployment signs", dir.display());
        }
        Ok(Self { certs, hbone_port, bundle_wait })
    }

    /// Waits (at most `bundle_wait`) for the trust bundle, then gives the node's mesh
    /// options and a task that follows the bundle for the agent's lifetime.
    pub async fn start(&self, client: kube::Client, namespace: &str) -> anyhow::Result<(MeshOptions, BundleFollower)> {
        let mut watch = watch_trust_bundle(client.clone(), namespace);
        let first = tokio::time::timeout(self.bundle_wait, watch.first()).await.ok().flatten().ok_or_else(|| {
            anyhow::anyhow!(
                "no trust bundle in ConfigMap {namespace}/{TRUST_BUNDLE_CONFIGMAP} after {:?}: is the ambit-signer Deployment running (README \"Mesh in Kubernetes mode\")?",
                self.bundle_wait
            )
        })?;
        let bundle = self.bundle(&first).map_err(|e| anyhow::anyhow!("the trust bundle in ConfigMap {namespace}/{TRUST_BUNDLE_CONFIGMAP}: {e}"))?;
        let (updates, bundle_updates) = watch::channel(bundle.clone());
        let source = KubernetesCsr::new(client, CsrOptions::default());
        let options = MeshOptions {
            trust_domain: self.certs.trust_domain.clone(),
            lifetime: self.certs.lifetime,
            hbone_port: self.hbone_port,
            bundle,
            source: Arc::new(source),
            bundle_updates: Some(bundle_updates),
        };
        Ok((options, BundleFollower::spawn(self.clone(), watch, first, updates)))
    }

    fn bundle(&self, roots: &super::TrustBundle) -> Result<TrustBundle, ambit_proxy_core::tls::BundleError> {
        TrustBundle::new(self.certs.trust_domain.clone(), roots.clone())
    }
}

/// Follows the trust bundle after start and hands each new valid one to the node's
/// certificate store ([`MeshOptions::bundle_updates`]): a CA rotation reaches running
/// agents without a restart.
pub struct BundleFollower(JoinHandle<()>);

impl BundleFollower {
    fn spawn(settings: MeshSettings, mut watch: TrustBundleWatch, mut current: super::TrustBundle, updates: watch::Sender<TrustBundle>) -> Self {
        Self(tokio::spawn(async move {
            while watch.bundle.changed().await.is_ok() {
                let latest = watch.bundle.borrow_and_update().clone();
                let Some(latest) = latest.filter(|b| *b != current) else { continue };
                match settings.bundle(&latest) {
                    Ok(bundle) => {
                        tracing::info!(certificates = latest.len(), "the trust bundle changed; verifying peers with the new one");
                        updates.send_replace(bundle);
                    }
                    Err(error) => tracing::warn!(%error, "ignoring an unusable trust bundle"),
                }
                current = latest;
            }
        }))
    }
}

impl Drop for BundleFollower {
    fn drop(&mut self) {
        self.0.abort();
    }
}
