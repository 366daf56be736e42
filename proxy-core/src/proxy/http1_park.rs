//! Downstream HTTP/1.1 served in rounds, so that an idle keep-alive connection holds
//! no HTTP state.
//!
//! hyper keeps a connection's read and write buffers (8 KiB each) and the box of its
//! request future for as long as the connection lives. Here each round is one hyper
//! connection on the same socket: once no request has been in flight for
//! [`PARK_AFTER`], the round is ended between two requests (graceful shutdown of an
//! idle connection: hyper closes at once and writes nothing), hyper hands back the
//! socket and any bytes it had read but not parsed, and all of its state is dropped.
//! The parked connection then waits for the client's next bytes (or the rest of the
//! idle timeout) with none of that memory; the next round starts when they arrive.
//!
//! The client sees one keep-alive connection throughout: every response was sent with
//! keep-alive before parking, and a round never ends inside a message. Upgraded
//! connections leave the rounds (the upgrade owns the socket from then on).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::drain;
use super::in_flight::{InFlight, InFlightBody};
use super::request_framing::RequestFramingGuard;
use super::wake_gate::WakeGated;

/// How long a keep-alive connection has no request in flight before it is parked
/// (noticed up to half of it late).
pub const PARK_AFTER: Duration = Duration::from_secs(1);

type Guard = RequestFramingGuard<TcpStream>;

/// The socket as one round's hyper connection sees it: shutting it down only flushes
/// and is noted, so that the socket outlives a round ended for parking; the caller
/// shuts it down when the connection really ends.
struct RoundIo {
    inner: Guard,
    shutdown_requested: bool,
}

impl AsyncRead for RoundIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for RoundIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.shutdown_requested = true;
        Poll::Ready(Ok(()))
    }
}

/// The timeouts a connection's rounds need.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    /// No request in flight for this long closes the connection.
    pub http_idle: Duration,
    /// A request whose bytes are on their way when the proxy drains gets this long to
    /// start ([`drain`]).
    pub request_head: Duration,
}

/// How one round ended.
enum RoundEnd {
    /// Between two requests, `quiet` after the last one: the socket is back.
    Parked { io: Guard, quiet: Duration },
    /// The connection is over (closed, failed, upgraded, or shut down).
    Over,
}

/// Serves HTTP/1.1 on `io` in rounds until the connection ends: closed by either
/// side, upgraded, idle for `http_idle`, or `shutdown` (graceful).
pub(super) async fn serve<S>(
    builder: &http1::Builder,
    mut io: Guard,
    service: S,
    in_flight: &InFlight,
    timeouts: Timeouts,
    shutdown: &CancellationToken,
) where
    S: HttpService<Incoming, ResBody = InFlightBody> + Clone + Send + Unpin + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        // Boxed: its state (hyper's connection, the drain's) is freed while parked.
        let (mut guard, quiet) = match Box::pin(round(builder, io, service.clone(), in_flight, timeouts, shutdown)).await {
            RoundEnd::Parked { io, quiet } => (io, quiet),
            RoundEnd::Over => return,
        };
        guard.release_buffer();
        if !guard.has_work() {
            tokio::select! {
                // Bytes that arrived are a request to answer, drain or not.
                biased;
                readable = guard.get_ref().readable() => {
                    if readable.is_err() {
                        return;
                    }
                }
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(timeouts.http_idle.saturating_sub(quiet)) => {
                    tracing::debug!("closing idle HTTP connection");
                    let _ = guard.shutdown().await;
                    return;
                }
            }
        }
        io = guard;
    }
}

/// One hyper connection on `io`, until the connection ends or is parked.
async fn round<S>(
    builder: &http1::Builder,
    io: Guard,
    service: S,
    in_flight: &InFlight,
    timeouts: Timeouts,
    shutdown: &CancellationToken,
) -> RoundEnd
where
    S: HttpService<Incoming, ResBody = InFlightBody> + Send + Unpin + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(RoundIo { inner: io, shutdown_requested: false });
    // Inline: the caller boxes this round, so that a parked connection keeps no room
    // for hyper's state.
    let mut conn = builder.serve_connection(io, service).with_upgrades();
    // This round began because the client sent something (the connection's opening,
    // or bytes that woke it from parking).
    let since = in_flight.started();
    let mut parked = None;
    // The watchers are polled only when they have news, not on each of the connection's
    // wake-ups (see `wake_gate`).
    let result = tokio::select! {
        biased;
        result = &mut conn => result,
        _ = WakeGated::new(shutdown.cancelled()) => {
            match drain::until_pending_request(&mut conn, in_flight, since, timeouts.request_head).await {
                Some(result) => result,
                None => {
                    Pin::new(&mut conn).graceful_shutdown();
                    (&mut conn).await
                }
            }
        }
        quiet = WakeGated::new(in_flight.quiet_for(PARK_AFTER.min(timeouts.http_idle))) => {
            Pin::new(&mut conn).graceful_shutdown();
            // Idle between two requests, hyper closes in this very poll; if it does
            // not, it is inside a message: let it finish and end the connection.
            match futures::poll!(&mut conn) {
                Poll::Ready(result) => {
                    parked = Some(quiet);
                    result
                }
                Poll::Pending => (&mut conn).await,
            }
        }
    };
    if let Err(error) = &result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
    // None once upgraded: the upgraded stream owns the socket.
    let Some(parts) = conn.into_parts() else { return RoundEnd::Over };
    let RoundIo { inner: mut guard, shutdown_requested } = parts.io.into_inner();
    match parked {
        Some(quiet) if quiet < timeouts.http_idle && result.is_ok() => {
            guard.unread(&parts.read_buf);
            RoundEnd::Parked { io: guard, quiet }
        }
        _ => {
            if parked.is_some() {
                tracing::debug!("closing idle HTTP connection");
            }
            // hyper's shutdown, made now (after an error too, as hyper does: a 400 or
            // 431 it wrote is followed by the end of the stream, not a reset).
            if shutdown_requested || parked.is_some() {
                let _ = guard.shutdown().await;
            }
            RoundEnd::Over
        }
    }
}
