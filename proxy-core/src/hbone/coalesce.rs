//! The write side of a tunnel connection, between HTTP/2 and TLS: small writes are
//! gathered, and a flush is put off once so that other ready streams add their frames
//! first. One TLS record and one socket write then carry the frames of many streams.
//!
//! Without it, every response a stream hands to the connection became its own TLS
//! record and `sendmsg`: h2 writes out a DATA frame over 256 bytes on its own, and
//! tokio-rustls writes each record to the socket as soon as it is made. Under load the
//! connection task also ran right after each stream that woke it (tokio's LIFO slot),
//! before the next stream had written anything.
//!
//! Putting a flush off means waking the connection's own task and returning `Pending`:
//! tokio queues a task that woke itself behind the tasks already ready, which are the
//! streams with frames to add. When nothing else is ready it runs again at once, so an
//! idle connection only pays one more poll per flush. Writes larger than
//! [`GATHER`] (bulk DATA frames) go through as they are, after what was gathered.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this many bytes are gathered: a TLS record's largest plaintext.
pub(crate) const GATHER: usize = 16 * 1024;

/// A connection whose small writes are gathered until a flush (see the module docs).
#[derive(Debug)]
pub(crate) struct Coalesce<T> {
    inner: T,
    gathered: Vec<u8>,
    /// Whether the flush of what is gathered now was already put off once.
    put_off: bool,
}

impl<T> Coalesce<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self { inner, gathered: Vec::new(), put_off: false }
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Writes out everything gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.gathered.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.gathered))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.gathered.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    fn gather(&mut self, bufs: &[IoSlice<'_>], total: usize) -> usize {
        if self.gathered.capacity() == 0 {
            self.gathered.reserve_exact(GATHER);
        }
        for buf in bufs {
            self.gathered.extend_from_slice(buf);
        }
        total
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.gathered.len() + total <= GATHER {
            return Poll::Ready(Ok(this.gather(bufs, total)));
        }
        ready!(this.poll_drain(cx))?;
        if total <= GATHER {
            return Poll::Ready(Ok(this.gather(bufs, total)));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.gathered.is_empty() {
            if !this.put_off {
                this.put_off = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.put_off = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_writes_reach_the_peer_in_one_write_after_one_put_off_flush() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesce::new(near);
        for chunk in [&b"one "[..], b"two ", b"three"] {
            writer.write_all(chunk).await.unwrap();
        }
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let read = poll_fn(|cx| Poll::Ready(Pin::new(&mut far).poll_read(cx, &mut probe))).await;
        assert!(read.is_pending(), "written before a flush");
        // The first poll of a flush puts it off (and wakes the task); the second writes.
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            Pin::new(&mut writer).poll_flush(cx)
        })
        .await
        .unwrap();
        assert_eq!(polls, 2);
        let mut got = vec![0u8; 13];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two three");
    }

    #[tokio::test]
    async fn large_writes_go_through_after_what_was_gathered_and_order_is_kept() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesce::new(near);
        let big = vec![7u8; GATHER + 1];
        writer.write_all(b"head").await.unwrap();
        writer.write_all(&big).await.unwrap();
        writer.write_all(b"tail").await.unwrap();
        writer.flush().await.unwrap();
        writer.shutdown().await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"tail");
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_flush_with_nothing_gathered_is_not_put_off() {
        let (near, _far) = tokio::io::duplex(64);
        let mut writer = Coalesce::new(near);
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            Pin::new(&mut writer).poll_flush(cx)
        })
        .await
        .unwrap();
        assert_eq!(polls, 1);
    }
}
