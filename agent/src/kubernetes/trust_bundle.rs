//! The trust bundle the signer publishes: the ConfigMap
//! [`TRUST_BUNDLE_CONFIGMAP`](crate::signer::TRUST_BUNDLE_CONFIGMAP) in the agent's
//! namespace, key [`TRUST_BUNDLE_KEY`](crate::signer::TRUST_BUNDLE_KEY), read with `get`
//! and `watch` only.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::follow::follow;
use super::rbac;
use crate::signer::{TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY};

/// The CA certificates trusted for workload certificates.
pub type TrustBundle = Vec<CertificateDer<'static>>;

/// The certificates in a bundle ConfigMap; an error names what is wrong.
pub fn parse(map: &ConfigMap) -> Result<TrustBundle, String> {
    let pem = map
        .data
        .as_ref()
        .and_then(|d| d.get(TRUST_BUNDLE_KEY))
        .ok_or_else(|| format!("ConfigMap {TRUST_BUNDLE_CONFIGMAP} has no {TRUST_BUNDLE_KEY}"))?;
    let bundle: TrustBundle = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ConfigMap {TRUST_BUNDLE_CONFIGMAP} key {TRUST_BUNDLE_KEY}: {e}"))?;
    if bundle.is_empty() {
        return Err(format!("ConfigMap {TRUST_BUNDLE_CONFIGMAP} key {TRUST_BUNDLE_KEY} holds no certificate"));
    }
    Ok(bundle)
}

/// A running trust bundle watch; dropping it stops the task.
pub struct TrustBundleWatch {
    /// The latest valid bundle (`None` until one was read; a later invalid or deleted
    /// ConfigMap keeps the last valid bundle).
    pub bundle: watch::Receiver<Option<TrustBundle>>,
    task: JoinHandle<()>,
}

impl Drop for TrustBundleWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TrustBundleWatch {
    /// Waits for the first valid bundle.
    pub async fn first(&mut self) -> Option<TrustBundle> {
        self.bundle.wait_for(Option::is_some).await.ok().and_then(|b| b.clone())
    }
}

/// Follows the bundle ConfigMap in `namespace`.
pub fn watch_trust_bundle(client: Client, namespace: &str) -> TrustBundleWatch {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let (tx, bundle) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut follower = follow(api, TRUST_BUNDLE_CONFIGMAP, Duration::from_secs(1));
        while let Some(update) = follower.updates.recv().await {
            match update.map(|m| m.map(|m| parse(&m))) {
                Ok(Some(Ok(parsed))) => {
                    if tx.borrow().as_ref() != Some(&parsed) {
                        tracing::info!(certificates = parsed.len(), "trust bundle loaded");
                        tx.send_replace(Some(parsed));
                    }
                }
                Ok(Some(Err(error))) => tracing::warn!(%error, "ignoring an invalid trust bundle"),
                Ok(None) => tracing::warn!("ConfigMap {TRUST_BUNDLE_CONFIGMAP} does not exist (yet); is the signer running?"),
                Err(error) => tracing::warn!(%error, "reading the trust bundle (needs {} and {})", rbac::CONFIGMAP_GET, rbac::CONFIGMAP_WATCH),
            }
        }
    });
    TrustBundleWatch { bundle, task }
}
