//! Request bodies for RequestMirror: the main request streams on unchanged while a
//! bounded copy of its body is kept; once the body has ended the copy goes to every
//! mirror. A body over the limit is forwarded unmirrored (and that is logged).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use super::body::{self, Body, BoxError};

/// Largest request body copied to mirrors.
pub const MIRROR_BODY_LIMIT: usize = 64 * 1024;

/// A complete copy of a request body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BodyCopy {
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl BodyCopy {
    /// The copy as a body of its own.
    pub fn into_body(self) -> Body {
        match self.trailers {
            None => body::full(self.data),
            Some(trailers) => {
                let frames: Vec<Result<Frame<Bytes>, BoxError>> =
                    vec![Ok(Frame::data(self.data)), Ok(Frame::trailers(trailers))];
                body::boxed(http_body_util::StreamBody::new(futures::stream::iter(frames)))
            }
        }
    }
}

/// Wraps `inner` so that, once it has ended within `limit` bytes, each of the `copies`
/// receivers gets a [`BodyCopy`]. A receiver sees its sender dropped when the body is
/// too large, fails, or is never read to the end.
pub fn tee(inner: Body, limit: usize, copies: usize) -> (Body, Vec<oneshot::Receiver<BodyCopy>>) {
    if copies == 0 {
        return (inner, Vec::new());
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..copies).map(|_| oneshot::channel()).unzip();
    if inner.is_end_stream() {
        for sender in senders {
            let _ = sender.send(BodyCopy::default());
        }
        return (inner, receivers);
    }
    let tee = Tee { inner, data: BytesMut::new(), trailers: None, limit, senders };
    (tee.boxed(), receivers)
}

struct Tee {
    inner: Body,
    data: BytesMut,
    trailers: Option<HeaderMap>,
    limit: usize,
    /// Empty once the copy is delivered or abandoned.
    senders: Vec<oneshot::Sender<BodyCopy>>,
}

impl Tee {
    fn deliver(&mut self) {
        let copy = BodyCopy { data: std::mem::take(&mut self.data).freeze(), trailers: self.trailers.take() };
        for sender in self.senders.drain(..) {
            let _ = sender.send(copy.clone());
        }
    }
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if !this.senders.is_empty() => {
                if let Some(data) = frame.data_ref() {
                    if this.data.len() + data.len() > this.limit {
                        tracing::info!(limit = this.limit, "request body too large to mirror; forwarded unmirrored");
                        this.senders.clear();
                        this.data = BytesMut::new();
                    } else {
                        this.data.extend_from_slice(data);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.trailers = Some(trailers.clone());
                }
                if !this.senders.is_empty() && this.inner.is_end_stream() {
                    this.deliver();
                }
            }
            Poll::Ready(Some(Err(_))) => this.senders.clear(),
            Poll::Ready(None) if !this.senders.is_empty() => this.deliver(),
            _ => {}
        }
        polled
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
    use crate::proxy::body::chunked;

    #[tokio::test]
    async fn copies_reach_every_receiver_once_the_body_ends() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let (main, receivers) = tee(chunked(&["hel", "lo"], Some(trailers.clone())), 16, 2);
        let collected = main.collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), "hello");
        for receiver in receivers {
            let copy = receiver.await.unwrap();
            assert_eq!(copy.data, "hello");
            assert_eq!(copy.trailers.as_ref(), Some(&trailers));
            let again = copy.into_body().collect().await.unwrap();
            assert_eq!(again.trailers(), Some(&trailers));
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_forwarded_whole_but_not_copied() {
        let (main, receivers) = tee(chunked(&["0123456789", "0123456789"], None), 15, 1);
        assert_eq!(main.collect().await.unwrap().to_bytes(), "01234567890123456789");
        for receiver in receivers {
            assert!(receiver.await.is_err());
        }
    }

    #[tokio::test]
    async fn empty_bodies_are_copied_at_once_and_unread_bodies_never() {
        let (_main, receivers) = tee(body::empty(), 15, 1);
        for receiver in receivers {
            assert_eq!(receiver.await.unwrap(), BodyCopy::default());
        }
        let (main, receivers) = tee(chunked(&["abc"], None), 15, 1);
        drop(main);
        for receiver in receivers {
            assert!(receiver.await.is_err());
        }
    }
}
