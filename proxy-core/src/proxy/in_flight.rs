//! Requests in flight on one downstream HTTP connection (from the request head until
//! the response body is sent or dropped), so that a connection with none for the idle
//! timeout can be closed (HTTP/2 has no other idle bound; for HTTP/1 it backs up hyper's
//! keep-alive timer).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;

use super::body::{Body, BoxError};

/// The in-flight count of one connection.
pub struct InFlight {
    count: watch::Sender<usize>,
}

impl InFlight {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { count: watch::Sender::new(0) })
    }

    /// Counts one request until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlightGuard {
        self.count.send_modify(|n| *n += 1);
        InFlightGuard(self.clone())
    }

    /// Resolves once no request has been in flight for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        let mut count = self.count.subscribe();
        loop {
            let busy = *count.borrow_and_update() > 0;
            if busy {
                // The sender lives as long as `self`: changed() cannot fail here.
                let _ = count.changed().await;
            } else if tokio::time::timeout(idle, count.changed()).await.is_err() {
                return;
            }
        }
    }
}

/// Keeps one request counted while it lives.
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request counted until it is sent or dropped.
pub struct InFlightBody {
    inner: Body,
    _guard: InFlightGuard,
}

impl InFlightBody {
    pub fn new(inner: Body, guard: InFlightGuard) -> Self {
        Self { inner, _guard: guard }
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
}
