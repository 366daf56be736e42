//! This node's part in the mesh across nodes: the certificates of its pods'
//! identities, the HBONE listener, and the mesh destinations the proxy tunnels to.
//!
//! The mesh is on when the agent has a certificate source (standalone: `--ca-dir`;
//! Kubernetes: the CertificateSigningRequest API and Ambit's signer). Without one,
//! every call stays plaintext, as before.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ambit_proxy_core::config::MeshDestination;
use ambit_proxy_core::hbone::{AllowAll, HboneMetrics};
use ambit_proxy_core::identity::TrustDomain;
use ambit_proxy_core::metrics::CertificateMetrics;
use ambit_proxy_core::proxy::MeshSetup;
use ambit_proxy_core::tls::{CertLifetime, CertStore, CertStoreOptions, CertificateSource, TrustBundle};
use prometheus_client::registry::Registry;

use crate::translate::mesh::{MeshPod, MeshView};

/// How this node takes part in the mesh.
#[derive(Clone)]
pub struct MeshOptions {
    pub trust_domain: TrustDomain,
    pub lifetime: CertLifetime,
    /// Every node's HBONE port (Istio: 15008).
    pub hbone_port: u16,
    pub bundle: TrustBundle,
    /// Where this node's workload certificates are signed.
    pub source: Arc<dyn CertificateSource>,
    /// Later trust bundles (Kubernetes mode: the signer's ConfigMap changed), applied to
    /// the certificate store as they come; None: `bundle` never changes.
    pub bundle_updates: Option<tokio::sync::watch::Receiver<TrustBundle>>,
}

impl std::fmt::Debug for MeshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshOptions")
            .field("trust_domain", &self.trust_domain)
            .field("lifetime", &self.lifetime)
            .field("hbone_port", &self.hbone_port)
            .finish_non_exhaustive()
    }
}

/// The node's certificates and what the proxy needs of the mesh.
pub struct NodeMesh {
    certs: Arc<CertStore>,
    trust_domain: TrustDomain,
    hbone_port: u16,
    /// Applies [`MeshOptions::bundle_updates`]; aborted on drop.
    bundle_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for NodeMesh {
    fn drop(&mut self) {
        if let Some(task) = &self.bundle_task {
            task.abort();
        }
    }
}

/// Hands every new trust bundle to the store, until the sender goes away.
fn follow_bundle(certs: Arc<CertStore>, mut updates: tokio::sync::watch::Receiver<TrustBundle>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let bundle = updates.borrow_and_update().clone();
            if let Err(error) = certs.set_trust_bundle(bundle) {
                tracing::warn!(%error, "ignoring a trust bundle update; peers are still verified with the previous bundle");
            }
        }
    })
}

impl NodeMesh {
    /// Builds the certificate store and registers the mesh's metrics. Must run inside
    /// the control plane's runtime when `bundle_updates` is set (a task follows them).
    pub fn new(options: &MeshOptions, registry: &mut Registry) -> anyhow::Result<(Self, MeshSetup)> {
        let metrics = CertificateMetrics::register(registry);
        let store_options = CertStoreOptions { lifetime: options.lifetime, metrics, ..Default::default() };
        let certs = Arc::new(
            CertStore::new(options.bundle.clone(), options.source.clone(), store_options)
                .map_err(|e| anyhow::anyhow!("building the certificate store: {e}"))?,
        );
        let setup = MeshSetup { tls: certs.clone(), policy: Arc::new(AllowAll), metrics: HboneMetrics::register(registry) };
        let bundle_task = options.bundle_updates.clone().map(|updates| follow_bundle(certs.clone(), updates));
        Ok((Self { certs, trust_domain: options.trust_domain.clone(), hbone_port: options.hbone_port, bundle_task }, setup))
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn hbone_port(&self) -> u16 {
        self.hbone_port
    }

    /// Fetches certificates for identities new on this node and drops those gone.
    /// Must run inside the control plane's runtime (renewals are spawned on it).
    pub fn hold<T>(&self, view: &MeshView<T>) {
        self.certs.ensure(view.local_identities.iter().cloned());
    }

    /// The proxy's mesh table entry of a mesh pod (for [`crate::translate::mesh::mesh_view`]):
    /// its HBONE address (its node's, or this node's own address of the pod's family for
    /// local pods) and identity; local pods in `guarded` are marked so (the proxy dials
    /// them from the node's address). None for a local pod when this node has no address.
    pub fn destination<'a>(
        &self,
        node_ips: &'a [IpAddr],
        guarded: &'a BTreeSet<IpAddr>,
    ) -> impl FnMut(IpAddr, MeshPod) -> Option<MeshDestination> + 'a {
        let hbone_port = self.hbone_port;
        move |ip, pod| {
            let node = match pod.node {
                Some(node) => node,
                None => *node_ips.iter().find(|n| n.is_ipv4() == ip.is_ipv4()).or(node_ips.first())?,
            };
            Some(MeshDestination {
                node: SocketAddr::new(node, hbone_port),
                identity: pod.identity,
                on_this_node: pod.node.is_none(),
                guarded: pod.node.is_none() && guarded.contains(&ip),
            })
        }
    }

    /// `/config_dump`'s certificates (identity, serial, validity, state; never keys).
    pub fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.certs.status()).unwrap_or_default()
    }

    /// What `/ready` reports as degraded: identities without a valid certificate, and
    /// an unreachable CA (held certificates keep serving until they expire).
    pub fn problems(&self) -> Vec<String> {
        let ready = self.certs.ready();
        let mut problems = Vec::new();
        if ready.ca_unreachable {
            problems.push("certificate authority unreachable: held certificates serve until they expire".to_string());
        }
        for id in &ready.without_certificate {
            problems.push(format!("no valid certificate for {id}: mesh calls from and to it fail closed"));
        }
        problems
    }
}
