//! Rate-limited logging for warnings that a caller can trigger at will (a connection
//! without a kernel record, a map that stays full): at most one line per interval,
//! carrying how many occurrences were suppressed since the previous line.
//!
//! ```
//! use std::time::Duration;
//! use ambit_proxy_core::rate_limited_log::RateLimitedLog;
//!
//! static REJECTED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
//! if let Some(suppressed) = REJECTED.admit() {
//!     tracing::warn!(suppressed, "rejecting connection");
//! }
//! ```
//!
//! Lock-free: one atomic load on the suppressed path, so it is cheap on the data path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The default interval between two lines of one repeated warning.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// One repeated warning's limiter; usually a `static`.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval_ms: u64,
    /// Milliseconds since [`epoch`] before which nothing is logged (0: log the next one).
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    /// At most one line per `interval` (rounded down to milliseconds).
    pub const fn new(interval: Duration) -> Self {
        Self { interval_ms: interval.as_millis() as u64, next_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(suppressed)` when this occurrence should be logged, with how many were
    /// suppressed since the last logged one; `None` (and counted) otherwise.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(now_ms())
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next_ms
                .compare_exchange(next, now.saturating_add(self.interval_ms).max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL)
    }
}

/// A process-wide monotonic origin for the limiters' timestamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_once_per_interval_with_the_suppressed_count() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(log.admit_at(0), Some(0));
        assert_eq!(log.admit_at(1), None);
        assert_eq!(log.admit_at(9_999), None);
        assert_eq!(log.admit_at(10_000), Some(2));
        assert_eq!(log.admit_at(10_001), None);
        assert_eq!(log.admit_at(25_000), Some(1));
        assert_eq!(log.admit_at(30_000), None);
    }

    #[test]
    fn many_threads_log_once_per_interval() {
        let log = std::sync::Arc::new(RateLimitedLog::new(Duration::from_secs(3600)));
        let admitted: u64 = (0..4)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || (0..1000).filter(|_| log.admit_at(5).is_some()).count() as u64)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 1);
        assert_eq!(log.admit_at(3_600_005), Some(3999));
    }

    #[test]
    fn admit_uses_real_time() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), None);
    }
}
