//! Bounded-rate warnings: at most one line per key per period, with how many were
//! suppressed since the last one, so a misbehaving caller cannot flood the log.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered; beyond that, further new keys are suppressed until old
/// windows expire.
const MAX_KEYS: usize = 1024;

/// Decides, per key, whether a warning may be written now.
#[derive(Debug)]
pub struct RateLimited<K> {
    period: Duration,
    windows: Mutex<HashMap<K, Window>>,
}

#[derive(Debug)]
struct Window {
    logged_at: Instant,
    suppressed: u64,
}

impl<K: Eq + Hash + Clone> RateLimited<K> {
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
    fn one_line_per_key_per_period_with_the_suppressed_count() {
        let r = RateLimited::new(Duration::from_secs(10));
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
        let r = RateLimited::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert_eq!(r.check_at(&i, t0), Some(0));
        }
        assert_eq!(r.check_at(&MAX_KEYS, t0), None, "a full table suppresses new keys");
        assert_eq!(r.check_at(&MAX_KEYS, t0 + Duration::from_secs(11)), Some(0), "expired windows make room");
        assert!(r.windows.lock().unwrap().len() <= MAX_KEYS);
    }
}
