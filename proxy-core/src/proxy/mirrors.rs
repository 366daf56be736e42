//! The node-wide budget of RequestMirror requests: at most `max_in_flight` at once,
//! each bounded in time. Mirrors over the cap are dropped, counted, and logged at most
//! once per [`LOG_EVERY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::MirrorLimits;

/// Least time between two "mirrors dropped" log lines.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct MirrorSlots {
    slots: Arc<Semaphore>,
    timeout: Duration,
    dropped: AtomicU64,
    /// When the last "dropped" line was logged (None: never).
    last_log: Mutex<Option<Instant>>,
}

impl MirrorSlots {
    pub fn new(limits: &MirrorLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_in_flight)),
            timeout: limits.timeout,
            dropped: AtomicU64::new(0),
            last_log: Mutex::new(None),
        }
    }

    /// A slot for one mirror request (held until the request is done), or None when the
    /// cap is reached: the mirror is then dropped and counted.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                self.log_dropped(total);
                None
            }
        }
    }

    /// How long one mirror request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Mirrors dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn log_dropped(&self, total: u64) {
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(dropped_total = total, "mirror cap reached; dropping mirror requests");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_over_the_cap_are_dropped_and_counted() {
        let slots = MirrorSlots::new(&MirrorLimits { max_in_flight: 2, timeout: Duration::from_secs(1) });
        let first = slots.try_take().expect("first slot");
        let _second = slots.try_take().expect("second slot");
        assert!(slots.try_take().is_none());
        assert!(slots.try_take().is_none());
        assert_eq!(slots.dropped(), 2);
        drop(first);
        assert!(slots.try_take().is_some());
        assert_eq!(slots.dropped(), 2);
    }
}
