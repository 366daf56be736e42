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

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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

/// Most keys remembered; beyond that, further new keys are suppressed until old
/// windows expire.
const MAX_KEYS: usize = 1024;

/// Like [`RateLimitedLog`], per key (e.g. per cap and caller namespace): at most one
/// line per key per period, with how many were suppressed since the last one.
#[derive(Debug)]
pub struct KeyedRateLimitedLog<K> {
    period: Duration,
    windows: Mutex<HashMap<K, Window>>,
}

#[derive(Debug)]
struct Window {
    logged_at: Instant,
    suppressed: u64,
}

impl<K: Eq + Hash + Clone> KeyedRateLimitedLog<K> {
    pub fn new(period: Duration) -> Self {
        Self { period, windows: Mutex::new(HashMap::new()) }
    }

    /// `Some(suppressed)` when a line for `key` may be written now (`suppressed`: how
    /// many were held back since the last line); `None` when this one is suppressed.
    pub fn check(&self, key: &K) -> Option<u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &K, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(window) = windows.get_mut(key) {
            if now.duration_since(window.logged_at) < self.period {
                window.suppressed += 1;
                return None;
            }
            let suppressed = std::mem::take(&mut window.suppressed);
            window.logged_at = now;
            return Some(suppressed);
        }
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, w| now.duration_since(w.logged_at) < self.period);
            if windows.len() >= MAX_KEYS {
                return None;
            }
        }
        windows.insert(key.clone(), Window { logged_at: now, suppressed: 0 });
        Some(0)
    }
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


    #[test]
    fn one_line_per_key_per_period_with_the_suppressed_count() {
        let r = KeyedRateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.check_at(&"a", t0), Some(0));
        assert_eq!(r.check_at(&"a", t0 + Duration::from_secs(1)), None);
        assert_eq!(r.check_at(&"a", t0 + Duration::from_secs(2)), None);
        assert_eq!(r.check_at(&"b", t0 + Duration::from_secs(2)), Some(0), "keys are independent");
        assert_eq!(r.check_at(&"a", t0 + Duration::from_secs(11)), Some(2));
        assert_eq!(r.check_at(&"a", t0 + Duration::from_secs(12)), None);
    }

    #[test]
    fn the_key_table_stays_bounded() {
        let r = KeyedRateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert_eq!(r.check_at(&i, t0), Some(0));
        }
        assert_eq!(r.check_at(&MAX_KEYS, t0), None, "a full table suppresses new keys");
        assert_eq!(r.check_at(&MAX_KEYS, t0 + Duration::from_secs(11)), Some(0), "expired windows make room");
        assert!(r.windows.lock().unwrap().len() <= MAX_KEYS);
    }
}
