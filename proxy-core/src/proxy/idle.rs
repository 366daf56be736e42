//! Copying bytes both ways between two connections until both are done, one fails, or
//! no byte has moved in either direction for the idle timeout (TCP passthrough and
//! upgraded connections).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How a copy ended.
#[derive(Debug)]
pub enum Ended {
    /// Both directions finished (each side shut down its writing half).
    Closed,
    /// Nothing moved for the idle timeout; both sides are to be closed.
    Idle,
    Failed(io::Error),
}

/// The outcome of [`copy_until_idle`].
#[derive(Debug)]
pub struct Copied {
    /// Bytes read from `a` (and written to `b`).
    pub from_a: u64,
    /// Bytes read from `b` (and written to `a`).
    pub from_b: u64,
    pub ended: Ended,
}

/// Each direction's copy buffer for plain TCP passthrough (tokio's default): memory per
/// connection stays small.
pub const PLAIN_BUFFER: usize = 8 * 1024;

/// Each direction's copy buffer when one side is an HBONE tunnel: one read becomes one
/// DATA frame and its TLS records, so a larger buffer means fewer frames, records,
/// wake-ups and syscalls per byte (ztunnel grows its buffers to 16 KiB, then 256 KiB).
/// Small next to a tunnel stream's 4 MiB HTTP/2 window.
pub const TUNNEL_BUFFER: usize = 64 * 1024;

/// Copies `a` → `b` and `b` → `a` (half-close is propagated) until both directions
/// end, either fails, or nothing has moved for `idle`.
pub async fn copy_until_idle<A, B>(a: &mut A, b: &mut B, idle: Duration) -> Copied
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    copy_until_idle_with(a, b, idle, PLAIN_BUFFER).await
}

/// [`copy_until_idle`] with `buffer` bytes of copy buffer for each direction.
pub async fn copy_until_idle_with<A, B>(a: &mut A, b: &mut B, idle: Duration, buffer: usize) -> Copied
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut a = Tracked { inner: a, activity: &activity, read: 0 };
    let mut b = Tracked { inner: b, activity: &activity, read: 0 };
    let ended = {
        let copy = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, buffer, buffer);
        tokio::select! {
            result = copy => match result {
                Ok(_) => Ended::Closed,
                Err(error) => Ended::Failed(error),
            },
            _ = activity.idle_for(idle) => Ended::Idle,
        }
    };
    Copied { from_a: a.read, from_b: b.read, ended }
}

/// Whether a byte moved since the idle watcher last looked. Reads and writes only set
/// a flag (no clock read per I/O: on a tunnel that was a `clock_gettime` per DATA
/// frame); the watcher looks every [`Activity::tick`] and notes the time when it finds
/// the flag set, so a connection is cut between `idle` and `idle + idle/8` after its
/// last byte.
struct Activity {
    moved: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self { moved: AtomicBool::new(false) }
    }

    fn touch(&self) {
        if !self.moved.load(Ordering::Relaxed) {
            self.moved.store(true, Ordering::Relaxed);
        }
    }

    /// How often the watcher looks: an eighth of the timeout, at least 10 ms.
    fn tick(idle: Duration) -> Duration {
        (idle / 8).max(Duration::from_millis(10))
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        let tick = Self::tick(idle);
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(tick).await;
            let now = Instant::now();
            if self.moved.swap(false, Ordering::Relaxed) {
                last = now;
            } else if now.duration_since(last) >= idle {
                return;
            }
        }
    }
}

/// A connection that records every byte read or written in an [`Activity`].
struct Tracked<'a, S> {
    inner: &'a mut S,
    activity: &'a Activity,
    read: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.read += read as u64;
            this.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_pair_is_cut_after_the_idle_timeout_and_traffic_keeps_it_open() {
        let (mut a, mut a_peer) = tokio::io::duplex(64);
        let (mut b, mut b_peer) = tokio::io::duplex(64);
        let started = Instant::now();
        let copy = tokio::spawn(async move { copy_until_idle(&mut a, &mut b, Duration::from_secs(5)).await });
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            a_peer.write_all(b"hi").await.unwrap();
            let mut got = [0u8; 2];
            b_peer.read_exact(&mut got).await.unwrap();
        }
        let copied = copy.await.unwrap();
        assert!(matches!(copied.ended, Ended::Idle), "{copied:?}");
        assert_eq!((copied.from_a, copied.from_b), (6, 0));
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(14) && elapsed < Duration::from_secs(15), "{elapsed:?}");
    }
}
