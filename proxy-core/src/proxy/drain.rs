//! A downstream HTTP connection when the proxy drains (an upgrade's old agent, after
//! SIGTERM): requests in flight finish, and a request whose bytes are already on
//! their way is still answered.
//!
//! A connection (or a parked connection's new round) exists because its client sent
//! something. If the drain begins before that request has started, closing the
//! connection now would fail a request the client has already sent, which an HTTP/1.1
//! client cannot tell from one that was processed, so it may not retry it. Such a
//! connection gets the head timeout to start its request; the answer then says
//! `Connection: close` ([`super::in_flight::InFlightGuard::draining`]).

use std::future::Future;
use std::time::Duration;

use super::in_flight::InFlight;

/// Marks the connection as draining and, when no request has started since `since`
/// ([`InFlight::started`] at the start of the connection or round), polls `conn`
/// until one starts (then `None`: the caller shuts it down gracefully, which lets that
/// request finish), the connection ends (`Some` with its result), or `head_timeout`
/// passes (`None`).
pub(super) async fn until_pending_request<F>(conn: &mut F, in_flight: &InFlight, since: u32, head_timeout: Duration) -> Option<F::Output>
where
    F: Future + Unpin,
{
    in_flight.drain();
    if in_flight.started() != since {
        return None;
    }
    let deadline = tokio::time::Instant::now() + head_timeout;
    tokio::select! {
        result = conn => Some(result),
        () = in_flight.request_after(since, deadline) => None,
    }
}
