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
        let bundle = TrustBundle::new(self.certs.trust_domain.clone(), first.clone())
            .map_err(|e| anyhow::anyhow!("the trust bundle in ConfigMap {namespace}/{TRUST_BUNDLE_CONFIGMAP}: {e}"))?;
        let source = KubernetesCsr::new(client, CsrOptions::default());
        let options = MeshOptions {
            trust_domain: self.certs.trust_domain.clone(),
            lifetime: self.certs.lifetime,
            hbone_port: self.hbone_port,
            bundle,
            source: Arc::new(source),
        };
        Ok((options, BundleFollower::spawn(watch, first)))
    }
}

/// Follows the trust bundle after start. The certificate store keeps the bundle it was
/// built with; a changed bundle (a CA rotation) is logged and takes effect when the
/// agent restarts.
pub struct BundleFollower(JoinHandle<()>);

impl BundleFollower {
    fn spawn(mut watch: TrustBundleWatch, mut current: super::TrustBundle) -> Self {
        Self(tokio::spawn(async move {
            while watch.bundle.changed().await.is_ok() {
                let latest = watch.bundle.borrow_and_update().clone();
                if let Some(latest) = latest.filter(|b| *b != current) {
                    tracing::warn!(
                        certificates = latest.len(),
                        "the trust bundle changed; this agent keeps verifying with the bundle it started with until it restarts"
                    );
                    current = latest;
                }
            }
        }))
    }
}

impl Drop for BundleFollower {
    fn drop(&mut self) {
        self.0.abort();
    }
}
