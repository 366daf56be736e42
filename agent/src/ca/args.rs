//! The agent's certificate flags, and the certificate store they describe.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::identity::TrustDomain;
use ambit_proxy_core::metrics::CertificateMetrics;
use ambit_proxy_core::tls::{CertLifetime, CertStore, CertStoreOptions, TrustBundle};
use anyhow::Context;

use super::dir::load_ca;
use super::local::LocalCa;

#[derive(clap::Args, Clone, Debug)]
pub struct CertArgs {
    /// The mesh's SPIFFE trust domain (identities are spiffe://TD/ns/NS/sa/SA).
    #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// Lifetime of workload certificates (at least 1m; renewed at about half of it).
    #[arg(long, env = "AMBIT_CERT_LIFETIME", default_value = "24h", value_parser = crate::duration::parse_duration)]
    pub cert_lifetime: Duration,
    /// Standalone mode: a CA directory (`ambit-agent ca init`) the agent signs its own
    /// workload certificates with.
    #[arg(long, env = "AMBIT_CA_DIR")]
    pub ca_dir: Option<PathBuf>,
}

/// The checked certificate flags.
#[derive(Debug, Clone)]
pub struct CertSettings {
    pub trust_domain: TrustDomain,
    pub lifetime: CertLifetime,
    pub ca_dir: Option<PathBuf>,
}

impl CertArgs {
    pub fn settings(&self) -> anyhow::Result<CertSettings> {
        let trust_domain = TrustDomain::new(&self.trust_domain).context("--trust-domain")?;
        let lifetime = CertLifetime::new(self.cert_lifetime).context("--cert-lifetime")?;
        Ok(CertSettings { trust_domain, lifetime, ca_dir: self.ca_dir.clone() })
    }
}

/// Standalone mode's certificate store: certificates signed by the CA in `ca_dir`,
/// whose trust domain must be the configured one. Call `ensure` with the identities of
/// the node's pods.
pub fn local_cert_store(
    settings: &CertSettings,
    ca_dir: &std::path::Path,
    metrics: Arc<CertificateMetrics>,
) -> anyhow::Result<CertStore> {
    let (bundle, source) = local_source(settings, ca_dir)?;
    let options = CertStoreOptions { lifetime: settings.lifetime, metrics, ..Default::default() };
    Ok(CertStore::new(bundle, Arc::new(source), options)?)
}

/// Standalone mode's certificate authority (the CA in `ca_dir`, checked against the
/// settings) and the trust bundle it roots.
pub fn local_source(settings: &CertSettings, ca_dir: &std::path::Path) -> anyhow::Result<(TrustBundle, LocalCa)> {
    let authority = load_ca(ca_dir)?;
    if authority.trust_domain != settings.trust_domain {
        anyhow::bail!(
            "the CA in {} is for trust domain {}, not --trust-domain {}",
            ca_dir.display(),
            authority.trust_domain,
            settings.trust_domain
        );
    }
    if settings.lifetime.get() > authority.max_workload_lifetime {
        anyhow::bail!(
            "--cert-lifetime {:?} is longer than the CA in {} signs ({:?})",
            settings.lifetime.get(),
            ca_dir.display(),
            authority.max_workload_lifetime
        );
    }
    let bundle = authority.bundle();
    Ok((bundle, LocalCa::new(authority)))
}
