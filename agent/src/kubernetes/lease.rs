//! Leader election for the route-status writer through a `coordination.k8s.io/v1` Lease.
//!
//! Every agent runs an elector with its pod name as identity; the holder renews the
//! Lease every `renew_interval`. Another agent takes over once it has seen the Lease's
//! holder and renewTime unchanged for `lease_duration` (measured on its own clock, so
//! clock skew between nodes does not matter), or when the holder released it. Every
//! write carries the resourceVersion it read, so two agents racing for an expired Lease
//! cannot both win. A leader that cannot renew for `lease_duration - renew_interval`
//! steps down before anyone else may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::rbac;

/// The Lease's name.
pub const LEASE_NAME: &str = "ambit-status-writer";

/// Who competes for which Lease, and how fast.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The agent's namespace (where the Lease lives).
    pub namespace: String,
    pub name: String,
    /// This agent's identity (its pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

impl LeaseConfig {
    /// The production settings: Lease `ambit-status-writer`, 15 s duration, renewed every 5 s.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: LEASE_NAME.to_string(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }

    fn renew_deadline(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_interval).max(self.renew_interval)
    }
}

/// One agent's view of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The other holder's (identity, renewTime) and when this agent first saw it.
    observed: Option<((String, Option<String>), Instant)>,
    last_renewed: Option<Instant>,
    leading: bool,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        Self { api, config, observed: None, last_renewed: None, leading: false }
    }

    pub fn is_leader(&self) -> bool {
        self.leading
    }

    /// One round: acquire, renew or observe the Lease. Returns whether this agent leads.
    pub async fn try_acquire_or_renew(&mut self) -> bool {
        match self.round().await {
            Ok(leading) => {
                if leading {
                    self.last_renewed = Some(Instant::now());
                }
                self.set_leading(leading);
            }
            Err(error) => {
                tracing::warn!(lease = %self.config.name, %error, "lease round failed");
                let overdue = self.last_renewed.is_none_or(|t| t.elapsed() >= self.config.renew_deadline());
                if self.leading && overdue {
                    self.set_leading(false);
                }
            }
        }
        self.leading
    }

    fn set_leading(&mut self, leading: bool) {
        if leading != self.leading {
            tracing::info!(identity = %self.config.identity, leading, "status-writer leadership changed");
        }
        self.leading = leading;
    }

    async fn round(&mut self) -> Result<bool, String> {
        let now = MicroTime(Timestamp::now());
        let current = self.api.get_opt(&self.config.name).await.map_err(|e| format!("{e} (needs {})", rbac::LEASE_GET))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: kube::api::ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(format!("{e} (needs {})", rbac::LEASE_CREATE)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder == self.config.identity {
            let mut renewed = spec;
            renewed.renew_time = Some(now);
            renewed.lease_duration_seconds = Some(whole_seconds(self.config.lease_duration));
            lease.spec = Some(renewed);
            return self.replace(&lease).await;
        }
        let record = (holder.clone(), spec.renew_time.as_ref().map(|t| t.0.to_string()));
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record, at));
                at
            }
        };
        let expired = holder.is_empty() || first_seen.elapsed() >= self.config.lease_duration;
        if !expired {
            return Ok(false);
        }
        tracing::info!(previous = %holder, identity = %self.config.identity, "taking over the expired status-writer lease");
        let transitions = spec.lease_transitions.unwrap_or(0).saturating_add(1);
        lease.spec = Some(self.spec(now.clone(), now, transitions));
        self.replace(&lease).await
    }

    async fn replace(&self, lease: &Lease) -> Result<bool, String> {
        match self.api.replace(&self.config.name, &PostParams::default(), lease).await {
            Ok(_) => Ok(true),
            // Someone else wrote first: not leading this round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(format!("{e} (needs {})", rbac::LEASE_UPDATE)),
        }
    }

    fn spec(&self, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(whole_seconds(self.config.lease_duration)),
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Gives the Lease up (on shutdown) so another agent takes over at once.
    pub async fn release(&mut self) {
        if !self.leading {
            return;
        }
        self.leading = false;
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        if let Err(e) = self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "releasing the status-writer lease failed");
        } else {
            tracing::info!("status-writer lease released");
        }
    }
}

fn whole_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(i32::MAX).max(1)
}

/// Runs the election until `shutdown` (then releases the Lease); publishes whether this
/// agent leads.
pub fn spawn(client: Client, config: LeaseConfig, shutdown: CancellationToken) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let interval = config.renew_interval;
        let mut elector = LeaderElector::new(client, config);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    let leading = elector.try_acquire_or_renew().await;
                    tx.send_if_modified(|current| std::mem::replace(current, leading) != leading);
                }
            }
        }
        let _ = tx.send(false);
        elector.release().await;
    });
    (rx, task)
}
