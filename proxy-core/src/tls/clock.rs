//! The wall clock the certificate store reads: certificate validity, renewal times and
//! the TLS handshakes' notion of "now" all come from one [`Clock`], so tests can run
//! days of rotation in paused tokio time.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

/// Where the store reads the current wall time.
pub trait Clock: Debug + Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock (production).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Wall time anchored at the moment of creation that advances with tokio's clock: under
/// `tokio::time::pause()` it moves only when tokio's time does (tests).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self { wall: SystemTime::now(), start: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.wall + self.start.elapsed()
    }
}

/// A [`Clock`] as rustls' time provider: the handshakes judge certificate validity by
/// the same clock as the store.
#[derive(Debug)]
pub(crate) struct ClockTime(pub Arc<dyn Clock>);

impl TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(unix_time(self.0.now()))
    }
}

pub(crate) fn unix_time(time: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO))
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
