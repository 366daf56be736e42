//! One HBONE tunnel as a byte stream: an HTTP/2 CONNECT stream's DATA frames, read and
//! written through `AsyncRead`/`AsyncWrite` with HTTP/2 flow control (a received chunk's
//! window is released only once the chunk is handed to the reader; a write waits for
//! send capacity).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::chunks::Chunks;

/// Largest DATA chunk asked for at once.
const MAX_WRITE: usize = 64 * 1024;

/// Counts a connection's open streams; decrements when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    pub(crate) fn take(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A CONNECT stream after its 200 response: a bidirectional byte pipe. Shutting down
/// the writing half sends END_STREAM (a TCP half-close on the other side).
#[derive(Debug)]
pub struct TunnelStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    chunks: Chunks,
    write_closed: bool,
    _slot: Option<StreamSlot>,
}

impl TunnelStream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream, slot: Option<StreamSlot>) -> Self {
        Self { send, recv, pending: Bytes::new(), chunks: Chunks::default(), write_closed: false, _slot: slot }
    }
}

/// An h2 error as an I/O error; a peer's NO_ERROR or CANCEL reset reads as the end.
fn read_error(error: h2::Error) -> Option<io::Error> {
    match error.reason() {
        Some(Reason::NO_ERROR | Reason::CANCEL) => None,
        _ => Some(into_io(error)),
    }
}

fn into_io(error: h2::Error) -> io::Error {
    if error.is_io() {
        return error.into_io().unwrap_or_else(|| io::ErrorKind::BrokenPipe.into());
    }
    io::Error::new(io::ErrorKind::ConnectionReset, error)
}

impl AsyncRead for TunnelStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(chunk)) => {
                    let _ = this.recv.flow_control().release_capacity(chunk.len());
                    this.pending = chunk;
                }
                Some(Err(error)) => {
                    return Poll::Ready(match read_error(error) {
                        None => Ok(()),
                        Some(error) => Err(error),
                    })
                }
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl TunnelStream {
    /// Why the stream cannot be written to (the peer's reset, or a broken pipe).
    fn poll_write_error(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        Poll::Ready(match ready!(self.send.poll_reset(cx)) {
            Ok(Reason::NO_ERROR | Reason::CANCEL | Reason::STREAM_CLOSED) => io::ErrorKind::BrokenPipe.into(),
            Ok(reason) => io::Error::new(io::ErrorKind::ConnectionReset, h2::Error::from(reason)),
            Err(error) => into_io(error),
        })
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        this.send.reserve_capacity(buf.len().min(MAX_WRITE));
        loop {
            match ready!(this.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(capacity)) => {
                    let n = capacity.min(buf.len());
                    let chunk = this.chunks.copy(&buf[..n]);
                    if this.send.send_data(chunk, false).is_ok() {
                        return Poll::Ready(Ok(n));
                    }
                    break;
                }
                None | Some(Err(_)) => break,
            }
        }
        this.poll_write_error(cx).map(Err)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection task writes DATA frames as soon as it can.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Ok(()));
        }
        if this.send.send_data(Bytes::new(), true).is_ok() {
            this.write_closed = true;
            return Poll::Ready(Ok(()));
        }
        let error = ready!(this.poll_write_error(cx));
        this.write_closed = true;
        Poll::Ready(if error.kind() == io::ErrorKind::BrokenPipe { Ok(()) } else { Err(error) })
    }
}
