//! GEP-1742 route timeouts cover the whole response: a response body still streaming
//! when the deadline passes fails, so the client sees an aborted response (HTTP/1.1:
//! the connection closes before the body's end; HTTP/2: the stream is reset), never a
//! truncated one that looks complete.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::body::{self, Body, BoxError};
use crate::routes::Timeouts;

/// When the route's timeouts end a request forwarded at `sent_at` in one attempt (None:
/// never): `request` and `backendRequest` both count from sending; routing before it
/// does no I/O. Requests with a retry policy keep their deadlines in `super::retry`.
pub fn deadline(timeouts: &Timeouts, sent_at: Instant) -> Option<Instant> {
    let limits = [timeouts.request, timeouts.backend_request];
    limits.into_iter().flatten().min().map(|limit: Duration| sent_at + limit)
}

/// `body`, failing with [`ResponseTimeout`] once `deadline` has passed.
pub fn bounded(body: Body, deadline: Instant) -> Body {
    if body.is_end_stream() {
        return body;
    }
    body::boxed(DeadlineBody { inner: body, timer: Box::pin(tokio::time::sleep_until(deadline)) })
}

/// The error a response body fails with at its deadline.
#[derive(Debug, thiserror::Error)]
#[error("route timeout: response not complete in time")]
pub struct ResponseTimeout;

struct DeadlineBody {
    inner: Body,
    timer: Pin<Box<Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.timer.as_mut().poll(cx).is_ready() {
            tracing::info!("response body exceeded the route timeout; aborting it");
            return Poll::Ready(Some(Err(Box::new(ResponseTimeout))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
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
    use http_body_util::BodyExt;

    fn slow_body(chunks: usize, every: Duration) -> Body {
        let stream = futures::stream::unfold(0, move |i| async move {
            if i == chunks {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x"))), i + 1))
        });
        body::boxed(http_body_util::StreamBody::new(stream))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_past_its_deadline_fails_and_one_within_completes() {
        let now = Instant::now();
        let late = bounded(slow_body(10, Duration::from_secs(1)), now + Duration::from_millis(3500));
        let error = late.collect().await.expect_err("must fail at the deadline");
        assert!(error.downcast_ref::<ResponseTimeout>().is_some(), "{error}");
        let now = Instant::now();
        let in_time = bounded(slow_body(3, Duration::from_secs(1)), now + Duration::from_secs(5));
        assert_eq!(in_time.collect().await.unwrap().to_bytes(), "xxx");
    }

    #[test]
    fn the_shorter_timeout_wins() {
        let now = Instant::now();
        let both = Timeouts { request: Some(Duration::from_secs(5)), backend_request: Some(Duration::from_secs(2)) };
        assert_eq!(deadline(&both, now), Some(now + Duration::from_secs(2)));
        assert_eq!(deadline(&Timeouts::default(), now), None);
    }
}
