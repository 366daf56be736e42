//! The node's workload certificates: one per identity with pods on this node, each
//! obtained from a [`CertificateSource`] with a key made here, renewed in the background
//! (see [`rotation`]) and served through [`MeshTls`].

mod entry;
mod resolver;
mod rotation;
mod status;

pub use rotation::Backoff;
pub use status::{CertState, CertificateStatus, Readiness, StoreStatus};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::{ClientConfig, ServerConfig};
use tokio::task::JoinHandle;

use super::clock::{Clock, SystemClock};
use super::context::TlsContext;
use super::{identity_from_server_name, CertLifetime, CertificateSource, MeshTls, NoCertificate, TrustBundle};
use crate::identity::SpiffeId;
use crate::metrics::CertificateMetrics;
use entry::Entry;
use resolver::SniResolver;

/// How a [`CertStore`] runs: defaults are production's.
#[derive(Debug, Clone)]
pub struct CertStoreOptions {
    pub lifetime: CertLifetime,
    pub backoff: Backoff,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<CertificateMetrics>,
}

impl Default for CertStoreOptions {
    fn default() -> Self {
        Self {
            lifetime: CertLifetime::default(),
            backoff: Backoff::default(),
            clock: Arc::new(SystemClock),
            metrics: Arc::default(),
        }
    }
}

/// What the rotation tasks, the SNI resolver and the store share.
pub(crate) struct Shared {
    /// Swapped whole by [`CertStore::set_trust_bundle`].
    context: ArcSwap<TlsContext>,
    source: Arc<dyn CertificateSource>,
    lifetime: CertLifetime,
    backoff: Backoff,
    metrics: Arc<CertificateMetrics>,
    entries: ArcSwap<HashMap<SpiffeId, Arc<Entry>>>,
}

impl Shared {
    fn refresh_ca_unreachable(&self) {
        let unreachable = self.entries.load().values().any(|entry| entry.ca_unreachable());
        self.metrics.set_ca_unreachable(unreachable);
    }
}

/// Why [`CertStore::set_trust_bundle`] refused a bundle.
#[derive(Debug, thiserror::Error)]
pub enum TrustBundleChange {
    #[error("the new trust bundle is for trust domain {to}, not {from}")]
    TrustDomain { from: crate::identity::TrustDomain, to: crate::identity::TrustDomain },
    #[error("the new trust bundle: {0}")]
    Tls(rustls::Error),
}

/// The node's certificates and the TLS configurations that present them.
pub struct CertStore {
    shared: Arc<Shared>,
    server_config: ArcSwap<ServerConfig>,
    tasks: Mutex<HashMap<SpiffeId, JoinHandle<()>>>,
}

impl CertStore {
    pub fn new(
        bundle: TrustBundle,
        source: Arc<dyn CertificateSource>,
        options: CertStoreOptions,
    ) -> Result<Self, rustls::Error> {
        let shared = Arc::new(Shared {
            context: ArcSwap::from_pointee(TlsContext::new(bundle, options.clock)),
            source,
            lifetime: options.lifetime,
            backoff: options.backoff,
            metrics: options.metrics,
            entries: ArcSwap::default(),
        });
        let server_config = ArcSwap::from_pointee(shared.context.load().server_config(Arc::new(SniResolver(shared.clone())))?);
        Ok(Self { shared, server_config, tasks: Mutex::default() })
    }

    /// Makes the store hold certificates for exactly `ids` (the identities with pods on
    /// this node): new ones are requested at once, others are dropped. Must be called
    /// inside a tokio runtime (renewal runs as tasks).
    pub fn ensure(&self, ids: impl IntoIterator<Item = SpiffeId>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let wanted: HashMap<SpiffeId, Arc<Entry>> = {
            let current = self.shared.entries.load();
            let context = self.shared.context.load();
            let trust_domain = context.bundle.trust_domain();
            ids.into_iter()
                .filter(|id| {
                    let ours = id.trust_domain() == trust_domain;
                    if !ours {
                        tracing::warn!(identity = %id, "not in this node's trust domain; no certificate requested");
                    }
                    ours
                })
                .map(|id| {
                    let entry = current.get(&id).cloned().unwrap_or_else(|| Arc::new(Entry::new(id.clone())));
                    (id, entry)
                })
                .collect()
        };
        tasks.retain(|id, task| {
            let keep = wanted.contains_key(id);
            if !keep {
                task.abort();
                self.shared.metrics.forget(id);
            }
            keep
        });
        for (id, entry) in &wanted {
            if !tasks.contains_key(id) {
                let task = tokio::spawn(rotation::maintain(self.shared.clone(), entry.clone()));
                tasks.insert(id.clone(), task);
            }
        }
        self.shared.entries.store(Arc::new(wanted));
        self.shared.refresh_ca_unreachable();
    }

    /// The identities the store holds (or is obtaining) certificates for.
    pub fn identities(&self) -> Vec<SpiffeId> {
        let mut ids: Vec<SpiffeId> = self.shared.entries.load().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The trust bundle in use.
    pub fn trust_bundle(&self) -> TrustBundle {
        self.shared.context.load().bundle.clone()
    }

    /// Verifies peers with `bundle` from now on (a CA rotation: the signer published a
    /// new bundle). New handshakes on both sides use it; every held identity is renewed
    /// at once (its certificate keeps serving until the new one arrives), so that client
    /// configurations and certificates follow the new bundle. The trust domain cannot
    /// change. Must be called inside a tokio runtime.
    pub fn set_trust_bundle(&self, bundle: TrustBundle) -> Result<(), TrustBundleChange> {
        let current = self.shared.context.load_full();
        if bundle.trust_domain() != current.bundle.trust_domain() {
            return Err(TrustBundleChange::TrustDomain { from: current.bundle.trust_domain().clone(), to: bundle.trust_domain().clone() });
        }
        let context = TlsContext { bundle, ..(*current).clone() };
        let server_config = context.server_config(Arc::new(SniResolver(self.shared.clone()))).map_err(TrustBundleChange::Tls)?;
        self.shared.context.store(Arc::new(context));
        self.server_config.store(Arc::new(server_config));
        let mut tasks = self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries = self.shared.entries.load();
        for (id, task) in tasks.iter_mut() {
            let Some(entry) = entries.get(id) else { continue };
            task.abort();
            *task = tokio::spawn(rotation::maintain(self.shared.clone(), entry.clone()));
        }
        tracing::info!(identities = entries.len(), "trust bundle replaced; renewing every certificate");
        Ok(())
    }

    pub fn metrics(&self) -> &Arc<CertificateMetrics> {
        &self.shared.metrics
    }

    /// Every identity's certificate (serials and validity; never keys).
    pub fn status(&self) -> StoreStatus {
        let now = self.shared.context.load().clock.now();
        let entries = self.shared.entries.load();
        let mut certificates: Vec<CertificateStatus> =
            entries.values().map(|entry| status::status_of(entry, now)).collect();
        certificates.sort_by(|a, b| a.identity.cmp(&b.identity));
        StoreStatus {
            trust_domain: self.shared.context.load().bundle.trust_domain().clone(),
            lifetime_seconds: self.shared.lifetime.get().as_secs(),
            ca_unreachable: entries.values().any(|entry| entry.ca_unreachable()),
            certificates,
        }
    }

    pub fn ready(&self) -> Readiness {
        let now = self.shared.context.load().clock.now();
        let entries = self.shared.entries.load();
        let mut without_certificate: Vec<SpiffeId> =
            entries.values().filter(|entry| entry.current(now).is_none()).map(|entry| entry.id.clone()).collect();
        without_certificate.sort();
        Readiness { without_certificate, ca_unreachable: entries.values().any(|entry| entry.ca_unreachable()) }
    }
}

impl MeshTls for CertStore {
    fn client_config(&self, source: &SpiffeId) -> Result<Arc<ClientConfig>, NoCertificate> {
        let entries = self.shared.entries.load();
        let held = entries.get(source).and_then(|entry| entry.current(self.shared.context.load().clock.now()));
        held.map(|held| held.client_config.clone()).ok_or_else(|| NoCertificate(source.clone()))
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config.load_full()
    }

    fn server_certificate_obtained(&self, server_name: &str) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        match self.identity_named(server_name) {
            Some(identity) => self.obtained(&identity),
            None => Box::pin(std::future::ready(())),
        }
    }

    fn obtained(&self, source: &SpiffeId) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let entry = self.shared.entries.load().get(source).cloned();
        let shared = self.shared.clone();
        Box::pin(async move {
            if let Some(entry) = entry {
                entry.settled(|| shared.context.load().clock.now()).await;
            }
        })
    }
}

impl CertStore {
    fn identity_named(&self, server_name: &str) -> Option<SpiffeId> {
        identity_from_server_name(server_name, self.shared.context.load().bundle.trust_domain())
    }
}

impl Drop for CertStore {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        for task in tasks.values() {
            task.abort();
        }
    }
}
