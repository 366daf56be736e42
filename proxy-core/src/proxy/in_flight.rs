//! Requests in flight on one downstream HTTP connection (from the request head until
//! the response body is sent or dropped), so that a connection with none for the idle
//! timeout can be closed (HTTP/2 has no other idle bound; for HTTP/1 it backs up hyper's
//! keep-alive timer).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::body::{Body, BoxError};
use crate::limits::Permit;

/// How often [`InFlight::request_after`] looks.
const STARTED_POLL: Duration = Duration::from_millis(5);

/// The in-flight count of one connection. Starting and ending a request are two
/// atomic writes each (no wake-up, no timer): the idle watcher looks every idle/8.
pub struct InFlight {
    count: AtomicUsize,
    /// Set when a request starts or ends; cleared by the watcher.
    touched: AtomicBool,
    /// Set when the first request starts; never cleared.
    started: AtomicU32,
    /// Set when the proxy began to drain: answers tell HTTP/1 clients the connection closes.
    draining: AtomicBool,
}

impl InFlight {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { count: AtomicUsize::new(0), touched: AtomicBool::new(false), started: AtomicU32::new(0), draining: AtomicBool::new(false) })
    }

    /// Counts one request until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.touched.store(true, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }

    /// Marks the connection as closing once its requests are answered.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// How many requests have started on this connection (wrapping).
    pub fn started(&self) -> u32 {
        self.started.load(Ordering::Relaxed)
    }

    /// Resolves when a request starts after `started` had been counted ([`Self::started`]),
    /// or at `deadline`. It looks every few milliseconds: it only runs while a proxy
    /// drains.
    pub async fn request_after(&self, started: u32, deadline: tokio::time::Instant) {
        while self.started() == started && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(STARTED_POLL.min(deadline - tokio::time::Instant::now())).await;
        }
    }

    /// Resolves once no request has been in flight for `idle` (noticed up to idle/8
    /// late).
    pub async fn idle_for(&self, idle: Duration) {
        self.quiet(idle, idle / 8).await;
    }

    /// Resolves once no request has been in flight for at least `at_least` (looked at
    /// every `at_least`/2), with how long that has been, as counted.
    pub async fn quiet_for(&self, at_least: Duration) -> Duration {
        self.quiet(at_least, at_least / 2).await
    }

    async fn quiet(&self, at_least: Duration, every: Duration) -> Duration {
        let every = every.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut quiet = Duration::ZERO;
        loop {
            ticks.tick().await;
            let touched = self.touched.swap(false, Ordering::Relaxed);
            if touched || self.count.load(Ordering::Relaxed) > 0 {
                quiet = Duration::ZERO;
                continue;
            }
            quiet += every;
            if quiet >= at_least {
                return quiet;
            }
        }
    }
}

/// Keeps one request counted while it lives.
pub struct InFlightGuard(Arc<InFlight>);

impl InFlightGuard {
    /// Whether the connection closes once its requests are answered.
    pub fn draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.touched.store(true, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted until it is sent or dropped, and
/// with it the caller's request permit (none for a reply to a refused request).
pub struct InFlightBody {
    inner: Body,
    _guard: InFlightGuard,
    _permit: Option<Permit>,
}

impl InFlightBody {
    pub fn new(inner: Body, guard: InFlightGuard, permit: Option<Permit>) -> Self {
        Self { inner, _guard: guard, _permit: permit }
    }
}

impl HttpBody for InFlightBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_end() {
        let in_flight = InFlight::new();
        let started = Instant::now();
        let guard = in_flight.start();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(7)).await;
            drop(guard);
        });
        in_flight.idle_for(Duration::from_secs(5)).await;
        release.await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(12) && elapsed < Duration::from_secs(13), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_never_idle_for_the_timeout_stays_open() {
        let in_flight = InFlight::new();
        let busy = {
            let in_flight = in_flight.clone();
            async move {
                // A short request every 3 s: never 5 s without one.
                for _ in 0..10 {
                    drop(in_flight.start());
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
            }
        };
        let started = Instant::now();
        let (_, ()) = tokio::join!(in_flight.idle_for(Duration::from_secs(5)), busy);
        let elapsed = started.elapsed();
        // The last request ended at 27 s: idle from then on.
        assert!(elapsed >= Duration::from_secs(32) && elapsed < Duration::from_secs(33), "{elapsed:?}");
    }
}
