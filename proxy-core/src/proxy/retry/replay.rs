//! Request bodies that can be sent again: each attempt gets a body that first replays
//! what earlier attempts read, then goes on reading the caller's body, keeping a copy
//! of at most [`REPLAY_BODY_LIMIT`] bytes. A body that grew past the limit (or failed)
//! cannot be replayed, and its request is not retried.
//!
//! The caller's body streams on as it arrives: nothing waits for it to end (a gRPC
//! stream or a slow upload goes through at once). Only the newest attempt may read: an
//! older attempt's body fails from then on, so its request is aborted, never ended
//! early as if complete.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::proxy::body::{self, Body, BoxError};

/// Largest request body kept for retries (the same as for mirrors).
pub const REPLAY_BODY_LIMIT: usize = 64 * 1024;

/// The error an attempt's body fails with once a newer attempt has started.
#[derive(Debug, thiserror::Error)]
#[error("request body taken over by a retry")]
pub struct Superseded;

struct Shared {
    /// The caller's body, until it has ended.
    source: Option<Body>,
    /// What was read so far (emptied when it grew past the limit).
    chunks: Vec<Bytes>,
    buffered: usize,
    trailers: Option<HeaderMap>,
    ended: bool,
    overflowed: bool,
    failed: bool,
    /// The attempt allowed to read.
    generation: u64,
    limit: usize,
}

/// A request body, replayable while it is within its limit.
pub struct Replay {
    shared: Arc<Mutex<Shared>>,
    hint: SizeHint,
    empty: bool,
}

impl Replay {
    pub fn new(source: Body, limit: usize) -> Self {
        let hint = source.size_hint();
        let empty = source.is_end_stream();
        let shared = Shared {
            source: (!empty).then_some(source),
            chunks: Vec::new(),
            buffered: 0,
            trailers: None,
            ended: empty,
            overflowed: false,
            failed: false,
            generation: 0,
            limit,
        };
        Self { shared: Arc::new(Mutex::new(shared)), hint, empty }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The body for the next attempt; earlier attempts' bodies stop reading.
    pub fn attempt(&self) -> Body {
        if self.empty {
            return body::empty();
        }
        let generation = {
            let mut shared = self.lock();
            shared.generation += 1;
            shared.generation
        };
        let attempt = AttemptBody { shared: self.shared.clone(), generation, next_chunk: 0, trailers_sent: false, hint: self.hint };
        body::boxed(attempt)
    }

    /// True while another attempt can send the whole body.
    pub fn replayable(&self) -> bool {
        let shared = self.lock();
        !shared.overflowed && !shared.failed
    }
}

struct AttemptBody {
    shared: Arc<Mutex<Shared>>,
    generation: u64,
    next_chunk: usize,
    trailers_sent: bool,
    hint: SizeHint,
}

impl AttemptBody {
    /// Reads the caller's body on, keeping a copy while within the limit.
    fn read_source(&mut self, shared: &mut Shared, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(source) = shared.source.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(source).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !shared.overflowed && shared.buffered + data.len() > shared.limit {
                        shared.overflowed = true;
                        shared.chunks = Vec::new();
                    } else if !shared.overflowed {
                        shared.chunks.push(data.clone());
                        shared.buffered += data.len();
                        self.next_chunk = shared.chunks.len();
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = Some(trailers.clone());
                    shared.ended = true;
                    shared.source = None;
                    self.trailers_sent = true;
                }
            }
            Poll::Ready(None) => {
                shared.ended = true;
                shared.source = None;
                self.trailers_sent = true;
            }
            Poll::Ready(Some(Err(_))) => shared.failed = true,
            Poll::Pending => {}
        }
        polled
    }
}

impl HttpBody for AttemptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let shared = this.shared.clone();
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        if shared.generation != this.generation {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if !shared.overflowed && this.next_chunk < shared.chunks.len() {
            let chunk = shared.chunks[this.next_chunk].clone();
            this.next_chunk += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if shared.ended {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(trailers) = shared.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
            }
            return Poll::Ready(None);
        }
        this.read_source(&mut shared, cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::body::chunked;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn every_attempt_sends_the_whole_body_and_its_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-timeout", "1S".parse().unwrap());
        let replay = Replay::new(chunked(&["hel", "lo"], Some(trailers.clone())), 16);
        for _ in 0..3 {
            let collected = replay.attempt().collect().await.unwrap();
            assert_eq!(collected.trailers(), Some(&trailers));
            assert_eq!(collected.to_bytes(), "hello");
            assert!(replay.replayable());
        }
    }

    #[tokio::test]
    async fn an_attempt_that_read_part_is_continued_by_the_next() {
        let replay = Replay::new(chunked(&["ab", "cd", "ef"], None), 16);
        let mut first = replay.attempt();
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ab");
        let second = replay.attempt();
        let error = first.frame().await.unwrap().expect_err("the older attempt must stop");
        assert!(error.downcast_ref::<Superseded>().is_some());
        assert_eq!(second.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_go_through_once_and_are_not_replayable() {
        let replay = Replay::new(chunked(&["0123456789", "0123456789"], None), 15);
        assert_eq!(replay.attempt().collect().await.unwrap().to_bytes(), "01234567890123456789");
        assert!(!replay.replayable());
    }

    #[tokio::test]
    async fn empty_bodies_stay_empty() {
        let replay = Replay::new(body::empty(), 15);
        let attempt = replay.attempt();
        assert!(attempt.is_end_stream());
        assert!(replay.replayable());
        assert_eq!(attempt.collect().await.unwrap().to_bytes(), "");
    }
}
