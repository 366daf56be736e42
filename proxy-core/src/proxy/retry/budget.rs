//! GEP-3388 retry budgets: per backend, retries may add at most `percent` of the
//! requests seen over `interval`, with a floor of `min_retries` per `min_interval` so
//! that backends with little traffic can still be retried. A failing backend then gets
//! at most (1 + percent/100) times its traffic plus the floor, never a multiple.
//!
//! The defaults are the API's (`XBackendTrafficPolicy.retryConstraint`): 20 % over
//! 10 s, at least 10 retries per second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Windows are counted in this many buckets (the window slides a bucket at a time).
const BUCKETS: usize = 10;
/// Budgets of backends beyond this many are pruned of the idle ones when a new one comes.
const PRUNE_ABOVE: usize = 4096;

/// The limits of a retry budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Retries may be at most this share (0..=100) of the requests in `interval`.
    pub percent: u32,
    pub interval: Duration,
    /// Retries always allowed per `min_interval`, whatever the share.
    pub min_retries: u32,
    pub min_interval: Duration,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self { percent: 20, interval: Duration::from_secs(10), min_retries: 10, min_interval: Duration::from_secs(1) }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// The bucket's number since the budget started (which slice of time it counts).
    tick: u64,
    requests: u64,
    retries: u64,
}

#[derive(Debug, Default)]
struct Window {
    buckets: [Bucket; BUCKETS],
    /// The floor's current slice of time and the retries counted in it.
    floor_tick: u64,
    floor_retries: u64,
    last_used: u64,
}

/// One backend's budget.
#[derive(Debug)]
pub struct RetryBudget {
    limits: BudgetLimits,
    started: Instant,
    window: Mutex<Window>,
}

fn tick(elapsed: Duration, width: Duration) -> u64 {
    let width = width.as_nanos().max(1);
    u64::try_from(elapsed.as_nanos() / width).unwrap_or(u64::MAX)
}

impl RetryBudget {
    pub fn new(limits: BudgetLimits, now: Instant) -> Self {
        Self { limits, started: now, window: Mutex::new(Window::default()) }
    }

    fn bucket_width(&self) -> Duration {
        (self.limits.interval / BUCKETS as u32).max(Duration::from_millis(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current bucket, emptied first when it last counted an older slice of time.
    fn current(window: &mut Window, now_tick: u64) -> &mut Bucket {
        window.last_used = now_tick;
        let bucket = &mut window.buckets[(now_tick % BUCKETS as u64) as usize];
        if bucket.tick != now_tick {
            *bucket = Bucket { tick: now_tick, requests: 0, retries: 0 };
        }
        bucket
    }

    /// Counts a request's first attempt.
    pub fn request(&self, now: Instant) {
        let now_tick = tick(now.saturating_duration_since(self.started), self.bucket_width());
        Self::current(&mut self.lock(), now_tick).requests += 1;
    }

    /// Takes one retry from the budget: false when it is spent (nothing is counted).
    pub fn try_retry(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.started);
        let now_tick = tick(elapsed, self.bucket_width());
        let floor_tick = tick(elapsed, self.limits.min_interval);
        let mut window = self.lock();
        if window.floor_tick != floor_tick {
            window.floor_tick = floor_tick;
            window.floor_retries = 0;
        }
        let live = window.buckets.iter().filter(|b| b.tick + (BUCKETS as u64) > now_tick && b.tick <= now_tick);
        let (requests, retries) = live.fold((0u64, 0u64), |(q, r), b| (q + b.requests, r + b.retries));
        let within_share = (retries + 1) * 100 <= requests * u64::from(self.limits.percent);
        let within_floor = window.floor_retries < u64::from(self.limits.min_retries);
        if !(within_share || within_floor) {
            return false;
        }
        window.floor_retries += 1;
        Self::current(&mut window, now_tick).retries += 1;
        true
    }

    /// True when nothing was counted for a whole window.
    fn idle(&self, now: Instant) -> bool {
        let now_tick = tick(now.saturating_duration_since(self.started), self.bucket_width());
        self.lock().last_used + (BUCKETS as u64) < now_tick
    }
}

/// The budgets of every backend, by backend label (`namespace/name:port`). They outlive
/// configuration changes; idle ones are pruned.
#[derive(Debug, Default)]
pub struct RetryBudgets {
    limits: BudgetLimits,
    budgets: Mutex<HashMap<Arc<str>, Arc<RetryBudget>>>,
}

impl RetryBudgets {
    pub fn new(limits: BudgetLimits) -> Self {
        Self { limits, budgets: Mutex::default() }
    }

    /// The budget of `backend`, created on first use.
    pub fn of(&self, backend: &Arc<str>, now: Instant) -> Arc<RetryBudget> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(budget) = budgets.get(backend) {
            return budget.clone();
        }
        if budgets.len() >= PRUNE_ABOVE {
            budgets.retain(|_, b| Arc::strong_count(b) > 1 || !b.idle(now));
        }
        let budget = Arc::new(RetryBudget::new(self.limits, now));
        budgets.insert(backend.clone(), budget.clone());
        budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(budget: &RetryBudget, now: Instant, tries: usize) -> usize {
        (0..tries).filter(|_| budget.try_retry(now)).count()
    }

    #[test]
    fn a_storm_gets_the_share_and_the_floor_only() {
        let start = Instant::now();
        let budget = RetryBudget::new(BudgetLimits::default(), start);
        // 1000 failing requests in one second, each wanting a retry: 20 % of them,
        // and the floor's 10 counted within them.
        for _ in 0..1000 {
            budget.request(start);
        }
        assert_eq!(allowed(&budget, start, 1000), 200);
        // Later in the same window: only the floor of the new second.
        let later = start + Duration::from_secs(2);
        assert_eq!(allowed(&budget, later, 100), 10);
    }

    #[test]
    fn the_floor_lets_quiet_backends_retry() {
        let start = Instant::now();
        let budget = RetryBudget::new(BudgetLimits::default(), start);
        budget.request(start);
        assert_eq!(allowed(&budget, start, 50), 10, "10 per second, whatever the share");
        assert_eq!(allowed(&budget, start + Duration::from_millis(1500), 50), 10);
    }

    #[test]
    fn old_requests_leave_the_window() {
        let start = Instant::now();
        let limits = BudgetLimits { min_retries: 0, ..BudgetLimits::default() };
        let budget = RetryBudget::new(limits, start);
        for _ in 0..100 {
            budget.request(start);
        }
        assert_eq!(allowed(&budget, start + Duration::from_secs(5), 100), 20);
        assert_eq!(allowed(&budget, start + Duration::from_secs(11), 100), 0, "the requests are out of the window");
    }

    #[test]
    fn budgets_are_per_backend_and_kept() {
        let now = Instant::now();
        let budgets = RetryBudgets::new(BudgetLimits { min_retries: 0, ..BudgetLimits::default() });
        let a: Arc<str> = Arc::from("ns/a:80");
        let b: Arc<str> = Arc::from("ns/b:80");
        for _ in 0..5 {
            budgets.of(&a, now).request(now);
        }
        assert!(budgets.of(&a, now).try_retry(now));
        assert!(!budgets.of(&b, now).try_retry(now), "b has seen no requests");
    }
}
