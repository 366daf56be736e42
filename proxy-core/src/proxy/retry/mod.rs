//! GEP-1731 retries: a request whose rule has a retry policy is sent again (to the next
//! endpoint of the same backend) after a connection error, an attempt timeout
//! (`backendRequest`), or a response code the policy lists, while retries are left,
//! the body can be replayed ([`replay`]), the `request` timeout leaves time, and the
//! backend's budget ([`budget`]) allows it.
//!
//! The timeouts follow GEP-1742: `request` spans every attempt and the waits between
//! them; `backendRequest` bounds each attempt. When no retry can be made, the caller
//! gets the last attempt's answer.

mod budget;
mod outcome;
mod replay;

pub use budget::{BudgetLimits, RetryBudgets};
pub use replay::{Replay, REPLAY_BODY_LIMIT};

use std::sync::Arc;

use http::{Request, Response};
use rand::Rng;
use tokio::time::{Duration, Instant};

use super::body::Body;
use super::http::{downstream_response, error_reply, upstream_request, upstream_version, Routed, Target};
use super::local_reply::LocalReply;
use super::Proxy;
use crate::config::ProxyConfig;
use crate::metrics::RetryLabels;
use crate::routes::{RetryPolicy, Timeouts};
use outcome::{Outcome, Refusal};

/// Everything the attempts of one request share.
struct Attempts<'a> {
    proxy: &'a Arc<Proxy>,
    config: &'a ProxyConfig,
    target: &'a Target<'a>,
    timeouts: Timeouts,
    grpc: bool,
    /// When `request` ends the whole exchange.
    request_deadline: Option<Instant>,
}

/// Forwards a request under `policy`; see the module documentation.
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    proxy: &Arc<Proxy>,
    config: &ProxyConfig,
    mut parts: http::request::Parts,
    body: Body,
    target: &Target<'_>,
    timeouts: Timeouts,
    policy: &RetryPolicy,
    grpc: bool,
    routed: &mut Routed<'_>,
) -> Response<Body> {
    let started = Instant::now();
    let attempts = Attempts {
        proxy,
        config,
        target,
        timeouts,
        grpc,
        request_deadline: timeouts.request.map(|limit| started + limit),
    };
    // The response keeps no reference to the downstream's extensions.
    parts.extensions = http::Extensions::new();
    let replay = Replay::new(body, REPLAY_BODY_LIMIT);
    let budget = proxy.retry_budgets.of(target.label, started.into_std());
    budget.request(started.into_std());
    let mut retries = 0;
    loop {
        let outcome = attempts.send(&parts, &replay, routed).await;
        let Some(reason) = outcome.retry_reason(policy, grpc) else {
            return attempts.answer(outcome);
        };
        let wait = jittered(policy, retries + 1);
        let refusal = if retries >= policy.attempts {
            Some(Refusal::Exhausted)
        } else if !replay.replayable() {
            Some(Refusal::BodyTooLarge)
        } else if attempts.request_deadline.is_some_and(|d| Instant::now() + wait >= d) {
            Some(Refusal::Deadline)
        } else if !budget.try_retry(Instant::now().into_std()) {
            Some(Refusal::Budget)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            attempts.count_refusal(routed, refusal);
            return attempts.answer(outcome);
        }
        attempts.count_retry(routed, reason);
        tracing::debug!(backend = %target.label, retry = retries + 1, reason, ?wait, "retrying request");
        drop(outcome);
        tokio::time::sleep(wait).await;
        retries += 1;
    }
}

/// The wait before retry number `retry`: between the policy's minimum and maximum.
fn jittered(policy: &RetryPolicy, retry: u32) -> Duration {
    let (min, max) = (policy.min_wait(retry), policy.max_wait(retry));
    if max <= min {
        return min;
    }
    let extra = rand::rng().random_range(0..=(max - min).as_micros().min(u128::from(u64::MAX)) as u64);
    min + Duration::from_micros(extra)
}

impl Attempts<'_> {
    /// One attempt: the next endpoint, the request head again, the body replayed.
    async fn send(&self, parts: &http::request::Parts, replay: &Replay, routed: &mut Routed<'_>) -> Outcome {
        let Some(endpoint) = self.target.endpoints.pick() else {
            tracing::debug!(backend = %self.target.label, "no ready endpoints");
            return Outcome::NoEndpoints;
        };
        routed.endpoint = Some(endpoint);
        let version = upstream_version(self.target.protocol, parts.version);
        let request = upstream_request(head_of(parts), replay.attempt(), version, false);
        let sent_at = Instant::now();
        let attempt_deadline = match (self.timeouts.backend_request.map(|limit| sent_at + limit), self.request_deadline) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        };
        let attempt = self.proxy.upstream.send(self.config, self.target.source, endpoint, version, request);
        let result = match attempt_deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, attempt).await.ok(),
            None => Some(attempt.await),
        };
        routed.backend_elapsed = Some(sent_at.elapsed());
        match result {
            None => Outcome::TimedOut,
            Some(Ok(response)) => Outcome::Response(response, attempt_deadline),
            Some(Err(error)) => Outcome::Failed(error),
        }
    }

    /// What the caller gets for the attempt that ends the request.
    fn answer(&self, outcome: Outcome) -> Response<Body> {
        match outcome {
            Outcome::Response(response, deadline) => downstream_response(response, deadline),
            Outcome::Failed(error) => error_reply(&error, self.target.label, self.grpc),
            Outcome::TimedOut => LocalReply::Timeout.response(self.grpc),
            Outcome::NoEndpoints => LocalReply::NoEndpoints.response(self.grpc),
        }
    }

    fn labels(&self, routed: &Routed<'_>, reason: &'static str) -> RetryLabels {
        RetryLabels { route: routed.route.clone(), rule: routed.rule.clone(), backend: self.target.label.clone(), reason }
    }

    fn count_retry(&self, routed: &Routed<'_>, reason: &'static str) {
        if let Some(metrics) = &self.proxy.metrics {
            metrics.retried(&self.labels(routed, reason));
        }
    }

    fn count_refusal(&self, routed: &Routed<'_>, refusal: Refusal) {
        if refusal == Refusal::Budget {
            tracing::debug!(backend = %self.target.label, "retry budget spent: not retried");
        }
        if let Some(metrics) = &self.proxy.metrics {
            metrics.retry_refused(&self.labels(routed, refusal.label()));
        }
    }
}

/// A copy of a request head (the extensions, already emptied, are not copied).
fn head_of(parts: &http::request::Parts) -> http::request::Parts {
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    head.into_parts().0
}
