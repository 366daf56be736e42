//! One identity's certificate over time: fetched at once, renewed at about half its
//! remaining lifetime (jittered, like Istio's grace-period ratio of 0.5), retried with
//! bounded exponential backoff when the CA fails. A certificate already held keeps
//! serving (until it expires) while renewals fail.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;

use super::entry::{Attempt, Entry};
use super::Shared;
use crate::identity::SpiffeId;
use crate::metrics::RenewalResult;
use crate::tls::csr::key_request;
use crate::tls::held::{accept, HeldCertificate};
use crate::tls::SourceError;

/// Renewal after this share of the time left when the certificate arrived, ± jitter.
const RENEW_RATIO: f64 = 0.5;
const RENEW_JITTER: f64 = 0.05;
/// Never renew sooner than this after an issue (a CA returning nearly expired
/// certificates must not make the store spin).
const MIN_RENEW_DELAY: Duration = Duration::from_secs(1);

/// Retry delays after failures: `initial`, doubled per failure, at most `max`, each
/// scaled by a random factor in [0.5, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// How long one request to the CA may take before it counts as unavailable.
    pub request_timeout: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_secs(1), max: Duration::from_secs(60), request_timeout: Duration::from_secs(30) }
    }
}

impl Backoff {
    fn delay(&self, failures: u32) -> Duration {
        let doubled = self.initial.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(self.max).mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// Keeps `entry` supplied with a valid certificate until the task is aborted.
pub(crate) async fn maintain(shared: Arc<Shared>, entry: Arc<Entry>) {
    let mut failures = 0u32;
    loop {
        entry.set_attempt(Attempt::InProgress);
        let delay = match obtain(&shared, &entry.id).await {
            Ok(held) => {
                failures = 0;
                let delay = renewal_delay(&held, shared.context.load().clock.now());
                installed(&shared, &entry, held);
                delay
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                failed(&shared, &entry, error);
                shared.backoff.delay(failures)
            }
        };
        tokio::time::sleep(delay).await;
    }
}

async fn obtain(shared: &Shared, id: &SpiffeId) -> Result<HeldCertificate, SourceError> {
    let request = key_request(id).map_err(SourceError::Invalid)?;
    let signing = shared.source.sign(id, &request.csr_pem, shared.lifetime.get());
    let issued = tokio::time::timeout(shared.backoff.request_timeout, signing)
        .await
        .map_err(|_| SourceError::Unavailable("the signing request timed out".into()))??;
    accept(&shared.context.load(), id, &request.key, issued)
}

fn renewal_delay(held: &HeldCertificate, now: SystemTime) -> Duration {
    let left = held.not_after.duration_since(now).unwrap_or(Duration::ZERO);
    let ratio = RENEW_RATIO + rand::rng().random_range(-RENEW_JITTER..=RENEW_JITTER);
    left.mul_f64(ratio).max(MIN_RENEW_DELAY)
}

fn installed(shared: &Shared, entry: &Entry, held: HeldCertificate) {
    tracing::info!(identity = %entry.id, serial = %held.serial, "workload certificate issued");
    shared.metrics.set_expiry(&entry.id, crate::tls::clock::unix_seconds(held.not_after));
    shared.metrics.renewal(RenewalResult::Success);
    entry.install(held);
    entry.set_attempt(Attempt::Idle);
    shared.refresh_ca_unreachable();
}

fn failed(shared: &Shared, entry: &Entry, error: SourceError) {
    let result = match &error {
        SourceError::Unavailable(_) => RenewalResult::Unavailable,
        SourceError::Refused { .. } => RenewalResult::Refused,
        SourceError::Invalid(_) => RenewalResult::Invalid,
    };
    tracing::warn!(identity = %entry.id, %error, "obtaining a workload certificate failed; retrying");
    shared.metrics.renewal(result);
    let unavailable = result == RenewalResult::Unavailable;
    entry.set_attempt(Attempt::Failed { error: error.to_string(), unavailable });
    shared.refresh_ca_unreachable();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let backoff = Backoff::default();
        for failures in 1..40 {
            let delay = backoff.delay(failures);
            let full = Duration::from_secs(1u64 << (failures - 1).min(20)).min(backoff.max);
            assert!(delay >= full / 2 && delay <= full, "failure {failures}: {delay:?} outside {full:?}/2..{full:?}");
        }
    }
}
