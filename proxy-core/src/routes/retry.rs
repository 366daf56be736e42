//! GEP-1731 retries of a route rule: how many, after how long, on which answers.
//!
//! A rule without a policy is never retried. A policy retries connection errors and
//! attempts that time out (`backendRequest`) always, and the response codes it lists;
//! gRPC answers count by the HTTP code of their `grpc-status` (see [`grpc_http_code`]).

use std::time::Duration;

/// Retries when the route's `retry` sets no `attempts` (the GEP leaves it to the
/// implementation; Istio's default).
pub const DEFAULT_ATTEMPTS: u32 = 2;
/// The shortest wait before a retry when `backoff` is not set (Envoy's default base).
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
/// Waits grow exponentially from `backoff` up to this multiple of it (Envoy's cap).
pub const BACKOFF_CAP_FACTOR: u32 = 10;
/// The most retries a rule may ask for: more only multiplies load (Ambit's limit).
pub const MAX_ATTEMPTS: u32 = 10;

/// The HTTP status codes a rule retries: a set of codes in 400..=599 (the only ones the
/// API allows), so an out-of-range code cannot be represented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryCodes {
    bits: [u64; 4],
}

/// A status code outside 400..=599.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("retry code {0} is not in 400..599")]
pub struct InvalidRetryCode(pub i64);

impl RetryCodes {
    const FIRST: u16 = 400;
    const LAST: u16 = 599;

    /// The set of `codes`, each in 400..=599.
    pub fn new(codes: impl IntoIterator<Item = i64>) -> Result<Self, InvalidRetryCode> {
        let mut set = Self::default();
        for code in codes {
            let valid = u16::try_from(code).ok().filter(|c| (Self::FIRST..=Self::LAST).contains(c));
            let code = valid.ok_or(InvalidRetryCode(code))?;
            let bit = usize::from(code - Self::FIRST);
            set.bits[bit / 64] |= 1 << (bit % 64);
        }
        Ok(set)
    }

    pub fn contains(&self, status: u16) -> bool {
        if !(Self::FIRST..=Self::LAST).contains(&status) {
            return false;
        }
        let bit = usize::from(status - Self::FIRST);
        self.bits[bit / 64] & (1 << (bit % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|b| *b == 0)
    }

    /// The codes, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (Self::FIRST..=Self::LAST).filter(|c| self.contains(*c))
    }
}

/// A rule's `retry`, with the defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: the policy never retries).
    pub attempts: u32,
    /// The shortest wait before a retry.
    pub backoff: Duration,
    pub codes: RetryCodes,
}

impl RetryPolicy {
    /// The shortest wait before retry number `retry` (1 for the first retry): `backoff`
    /// doubled for each retry before it, at most [`BACKOFF_CAP_FACTOR`] times `backoff`.
    /// The proxy adds jitter on top, never below this.
    pub fn min_wait(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(16);
        let factor = (1u32 << doublings).min(BACKOFF_CAP_FACTOR);
        self.backoff.saturating_mul(factor)
    }

    /// The longest wait before retry number `retry`: the minimum plus up to half of it.
    pub fn max_wait(&self, retry: u32) -> Duration {
        let min = self.min_wait(retry);
        min.saturating_add(min / 2)
    }
}

/// The HTTP status a gRPC status code corresponds to, for matching retry codes (the
/// mapping `google.rpc.Code` documents), or None for OK and unknown codes.
pub fn grpc_http_code(grpc_status: u32) -> Option<u16> {
    Some(match grpc_status {
        1 => 499,                // CANCELLED
        2 | 13 | 15 => 500,      // UNKNOWN, INTERNAL, DATA_LOSS
        3 | 9 | 11 => 400,       // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
        4 => 504,                // DEADLINE_EXCEEDED
        5 => 404,                // NOT_FOUND
        6 | 10 => 409,           // ALREADY_EXISTS, ABORTED
        7 => 403,                // PERMISSION_DENIED
        8 => 429,                // RESOURCE_EXHAUSTED
        12 => 501,               // UNIMPLEMENTED
        14 => 503,               // UNAVAILABLE
        16 => 401,               // UNAUTHENTICATED
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_hold_exactly_what_was_listed_and_refuse_out_of_range() {
        let codes = RetryCodes::new([503, 400, 599]).unwrap();
        assert!(codes.contains(503) && codes.contains(400) && codes.contains(599));
        assert!(!codes.contains(500) && !codes.contains(200) && !codes.contains(600));
        assert_eq!(codes.iter().collect::<Vec<_>>(), [400, 503, 599]);
        assert_eq!(RetryCodes::new([503, 200]), Err(InvalidRetryCode(200)));
        assert_eq!(RetryCodes::new([600]), Err(InvalidRetryCode(600)));
        assert_eq!(RetryCodes::new([-1]), Err(InvalidRetryCode(-1)));
        assert!(RetryCodes::new([]).unwrap().is_empty());
    }

    #[test]
    fn waits_double_from_the_backoff_up_to_the_cap() {
        let policy = RetryPolicy { attempts: 5, backoff: Duration::from_millis(100), codes: RetryCodes::default() };
        let mins: Vec<u128> = (1..=6).map(|r| policy.min_wait(r).as_millis()).collect();
        assert_eq!(mins, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.max_wait(1), Duration::from_millis(150));
        assert_eq!(policy.min_wait(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn grpc_statuses_map_to_their_http_codes() {
        assert_eq!(grpc_http_code(14), Some(503));
        assert_eq!(grpc_http_code(4), Some(504));
        assert_eq!(grpc_http_code(13), Some(500));
        assert_eq!(grpc_http_code(0), None);
        assert_eq!(grpc_http_code(99), None);
    }
}
