//! How one attempt ended, whether the policy retries it, and why a retry was not made.

use http::Response;
use tokio::time::Instant;

use crate::proxy::body::Body;
use crate::proxy::upstream::UpstreamError;
use crate::routes::{grpc_http_code, RetryPolicy};

/// How one attempt ended.
pub enum Outcome {
    /// A response head arrived (its body bounded by the attempt's deadline).
    Response(Response<Body>, Option<Instant>),
    /// The request failed before a response head.
    Failed(UpstreamError),
    /// `backendRequest` (or `request`) passed before a response head.
    TimedOut,
    /// The backend had no ready endpoint.
    NoEndpoints,
}

impl Outcome {
    /// Why the policy retries this outcome (the metric's `reason`), or None.
    pub fn retry_reason(&self, policy: &RetryPolicy, grpc: bool) -> Option<&'static str> {
        match self {
            Outcome::Response(response, _) => policy.codes.contains(retry_code(response, grpc)).then_some("status"),
            // A refusal (authorization, no identity) or an unroutable path is final.
            Outcome::Failed(error) if error.is_forbidden() || error.is_mesh_refusal() || error.is_invalid_path() => None,
            Outcome::Failed(_) => Some("connection"),
            Outcome::TimedOut => Some("timeout"),
            Outcome::NoEndpoints => None,
        }
    }
}

/// The code a response is retried on: for a gRPC call answered with `grpc-status` in
/// the head (a trailers-only error), the HTTP code of that status; else the HTTP status.
fn retry_code(response: &Response<Body>, grpc: bool) -> u16 {
    let grpc_status = grpc
        .then(|| response.headers().get("grpc-status"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match grpc_status {
        Some(status) => grpc_http_code(status).unwrap_or(response.status().as_u16()),
        None => response.status().as_u16(),
    }
}

/// Why a retryable attempt was not retried (the metric's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every retry the policy allows was made.
    Exhausted,
    /// The body grew past the replay limit (or failed).
    BodyTooLarge,
    /// The wait before the retry would reach the `request` timeout.
    Deadline,
    /// The backend's retry budget is spent.
    Budget,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Exhausted => "exhausted",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::Deadline => "deadline",
            Refusal::Budget => "budget",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::body;
    use crate::routes::RetryCodes;
    use std::time::Duration;

    fn policy(codes: &[i64]) -> RetryPolicy {
        RetryPolicy { attempts: 2, backoff: Duration::from_millis(1), codes: RetryCodes::new(codes.iter().copied()).unwrap() }
    }

    fn response(status: u16, grpc_status: Option<&str>) -> Outcome {
        let mut builder = Response::builder().status(status);
        if let Some(s) = grpc_status {
            builder = builder.header("grpc-status", s);
        }
        Outcome::Response(builder.body(body::empty()).unwrap(), None)
    }

    #[test]
    fn listed_codes_are_retried_and_others_not() {
        let p = policy(&[503]);
        assert_eq!(response(503, None).retry_reason(&p, false), Some("status"));
        assert_eq!(response(500, None).retry_reason(&p, false), None);
        assert_eq!(response(200, None).retry_reason(&p, false), None);
    }

    #[test]
    fn grpc_calls_are_retried_on_their_status() {
        let p = policy(&[503]);
        assert_eq!(response(200, Some("14")).retry_reason(&p, true), Some("status"), "UNAVAILABLE is 503");
        assert_eq!(response(200, Some("13")).retry_reason(&p, true), None, "INTERNAL is 500");
        assert_eq!(response(200, Some("0")).retry_reason(&p, true), None);
        assert_eq!(response(200, Some("14")).retry_reason(&p, false), None, "only gRPC calls");
    }

    #[test]
    fn connection_errors_and_timeouts_are_retried_without_codes() {
        let p = policy(&[]);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let failed = Outcome::Failed(UpstreamError::Connect("10.0.0.1:80".parse().unwrap(), refused));
        assert_eq!(failed.retry_reason(&p, false), Some("connection"));
        assert_eq!(Outcome::TimedOut.retry_reason(&p, false), Some("timeout"));
        assert_eq!(Outcome::NoEndpoints.retry_reason(&p, false), None);
        let no_identity = Outcome::Failed(UpstreamError::NoIdentity("10.0.0.1:80".parse().unwrap()));
        assert_eq!(no_identity.retry_reason(&p, false), None);
    }
}
