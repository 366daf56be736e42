//! The downstream IO of an HTTP/1 connection with a [`FramingTracker`] on its read path
//! (see the module docs). The server reads straight into its own buffer; the guard looks
//! at what was read, in place, and cuts a read short at a refused head. Writes go straight through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::FramingTracker;

/// Delivered in place of a refused head, from its first byte not yet delivered: `0x01`,
/// which no part of a request head may hold, so hyper fails to parse the head and
/// answers 400; then an empty line, which makes hyper parse it (after a partial read,
/// hyper parses again only once it sees a head's end).
pub(super) const REFUSAL: &[u8] = b"\x01\r\n\r\n";
/// Bytes read at once before the server exists (while telling HTTP/2 from HTTP/1).
const OPENING_READ: usize = 8 * 1024;
/// Capacity of the put-back buffer kept across reads; larger ones are freed once drained.
const RETAINED_PENDING: usize = 1024;

/// The downstream IO of an HTTP/1 connection with a [`FramingTracker`] in its read path.
pub struct RequestFramingGuard<S> {
    inner: S,
    tracker: FramingTracker,
    /// Bytes already followed by the tracker, delivered before anything new: read while
    /// telling how the connection opens, or put back by the server.
    pending: Vec<u8>,
    pending_pos: usize,
    eof: bool,
    /// Longest time a head may take (see [`RequestFramingGuard::with_head_timeout`]).
    head_timeout: Option<Duration>,
    /// Armed while a head is in progress.
    head_deadline: Option<Pin<Box<Sleep>>>,
}

/// How a connection opens, as far as the guard is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// HTTP/1 request heads (or the end of the stream): the guard follows them.
    Http1,
    /// The HTTP/2 preface: the guard stepped aside.
    Passthrough,
}

impl<S> RequestFramingGuard<S> {
    /// Wraps `inner`; heads longer than `max_head` are left to the server to refuse.
    pub fn new(inner: S, max_head: usize) -> Self {
        Self {
            inner,
            tracker: FramingTracker::new(max_head),
            pending: Vec::new(),
            pending_pos: 0,
            eof: false,
            head_timeout: None,
            head_deadline: None,
        }
    }

    /// Fails reading (so the server closes the connection) when a request head is not
    /// complete within `timeout`: counted from the start on a new connection, else from
    /// a head's first byte. The server's own header timer is off (it would arm a timer
    /// for every request).
    pub fn with_head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = Some(timeout);
        self.update_head_timer();
        self
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Puts back, ahead of anything still buffered, bytes the server had read but not
    /// used (the tracker followed them already).
    pub fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut pending = Vec::with_capacity(bytes.len() + self.pending.len() - self.pending_pos);
        pending.extend_from_slice(bytes);
        pending.extend_from_slice(&self.pending[self.pending_pos..]);
        self.pending = pending;
        self.pending_pos = 0;
    }

    /// Whether the server has something to read without waiting for the client: bytes
    /// buffered here, the end of the stream, or a request head in progress (whose
    /// deadline runs only while the server reads).
    pub fn has_work(&self) -> bool {
        self.pending_pos < self.pending.len() || self.eof || self.tracker.head_in_progress()
    }

    /// Frees the buffers that are empty (an idle connection keeps none).
    pub fn release_buffer(&mut self) {
        if self.pending_pos == self.pending.len() {
            self.pending = Vec::new();
            self.pending_pos = 0;
        }
    }

    /// Feeds the tracker the bytes just read. When they complete a refused head, returns
    /// how many come before that head in this read (none when it began earlier): only
    /// those are delivered, then [`REFUSAL`].
    fn follow(&mut self, read: &[u8]) -> Option<usize> {
        let read_start = self.tracker.position();
        let refusal = self.tracker.feed(read).err()?;
        tracing::info!(reason = %refusal.why, "refusing an ambiguously framed request with 400");
        self.eof = true;
        let at = refusal.head_start.saturating_sub(read_start);
        Some(usize::try_from(at).map_or(read.len(), |at| at.min(read.len())))
    }

    /// Delivers [`REFUSAL`] into `buf`, the part that does not fit on the next read.
    fn put_refusal(&mut self, buf: &mut ReadBuf<'_>) {
        let k = REFUSAL.len().min(buf.remaining());
        buf.put_slice(&REFUSAL[..k]);
        self.pending.extend_from_slice(&REFUSAL[k..]);
    }

    fn update_head_timer(&mut self) {
        let Some(timeout) = self.head_timeout else { return };
        if !self.tracker.head_in_progress() {
            self.head_deadline = None;
        } else if self.head_deadline.is_none() {
            self.head_deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        }
    }

    /// Pending, or a timeout error once the head deadline has passed.
    fn poll_head_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(deadline) = &mut self.head_deadline else { return Poll::Pending };
        ready!(deadline.as_mut().poll(cx));
        tracing::debug!("request head not complete in time; closing the connection");
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head timeout")))
    }
}

impl<S: AsyncRead + Unpin> RequestFramingGuard<S> {
    /// Reads until it is known whether the connection opens with the HTTP/2 preface;
    /// what was read stays buffered for the server. Fails when the head deadline passes.
    pub async fn opening(&mut self) -> io::Result<Opening> {
        std::future::poll_fn(|cx| loop {
            if self.eof || !self.tracker.at_start() {
                let passthrough = self.tracker.is_passthrough() && !self.eof;
                return Poll::Ready(Ok(if passthrough { Opening::Passthrough } else { Opening::Http1 }));
            }
            ready!(self.poll_opening_read(cx))?;
        })
        .await
    }

    /// One read before the server exists, into `pending`.
    fn poll_opening_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // On the stack (uninitialised: not zeroed on every read), so that no
        // per-connection buffer outlives the read.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); OPENING_READ];
        let mut scratch = ReadBuf::uninit(&mut chunk);
        if Pin::new(&mut self.inner).poll_read(cx, &mut scratch)?.is_pending() {
            return self.poll_head_deadline(cx);
        }
        if scratch.filled().is_empty() {
            self.eof = true;
            return Poll::Ready(Ok(()));
        }
        let read = scratch.filled();
        match self.follow(read) {
            None => self.pending.extend_from_slice(read),
            Some(at) => {
                self.pending.extend_from_slice(&read[..at]);
                self.pending.extend_from_slice(REFUSAL);
            }
        }
        self.update_head_timer();
        Poll::Ready(Ok(()))
    }

    /// Delivers put-back bytes into `buf`.
    fn read_pending(&mut self, buf: &mut ReadBuf<'_>) {
        let k = buf.remaining().min(self.pending.len() - self.pending_pos);
        buf.put_slice(&self.pending[self.pending_pos..self.pending_pos + k]);
        self.pending_pos += k;
        if self.pending_pos == self.pending.len() {
            // Idle connections keep no buffer beyond a small one.
            if self.pending.capacity() > RETAINED_PENDING {
                self.pending = Vec::new();
            } else {
                self.pending.clear();
            }
            self.pending_pos = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RequestFramingGuard<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_pos < this.pending.len() {
            this.read_pending(buf);
            return Poll::Ready(Ok(()));
        }
        if this.eof {
            return Poll::Ready(Ok(()));
        }
        if this.tracker.is_passthrough() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        if Pin::new(&mut this.inner).poll_read(cx, buf)?.is_pending() {
            return this.poll_head_deadline(cx);
        }
        if buf.filled().len() == before {
            this.eof = true;
            return Poll::Ready(Ok(()));
        }
        if let Some(at) = this.follow(&buf.filled()[before..]) {
            buf.set_filled(before + at);
            this.put_refusal(buf);
        }
        this.update_head_timer();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RequestFramingGuard<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
