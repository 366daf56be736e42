//! Request-framing guard for downstream HTTP/1 connections: refuses requests whose
//! framing is ambiguous (both `Content-Length` and `Transfer-Encoding`, or several
//! differing `Content-Length` values) with `400 Bad Request`, before hyper acts on them.
//!
//! hyper accepts such a request (Transfer-Encoding wins, the Content-Length is dropped
//! and the connection closed after the answer), which is safe but not what RFC 9112
//! §6.3 recommends for a proxy ("ought to be handled as an error"), and not what Envoy
//! (Istio) does by default, so the guard sits between the socket and hyper.
//!
//! Each head is parsed once, by hyper. The guard does not parse heads, copy them or hold
//! them back:
//!
//! * hyper reads straight into its own buffer through the guard; the guard looks at the
//!   bytes just read, in place.
//! * [`head_scan`] finds where a head ends and looks only at the start of each line for
//!   the framing headers (`Content-Length`, `Transfer-Encoding`, `Upgrade`). It agrees
//!   with httparse, hyper's parser, on every head httparse accepts (a property test and
//!   the fuzz target check this).
//! * [`FramingTracker`] follows the stream message by message: each head's framing, then
//!   the body (Content-Length or chunked, including trailers) to know where the next head
//!   starts. A head cut across reads is the one case it keeps a copy of (until complete).
//! * [`RequestFramingGuard`] wraps the connection's IO. When the tracker refuses a head,
//!   the read that completed it is cut short where that head starts (or at its start when
//!   the head began in an earlier read) and `0x01` and an empty line follow instead: no
//!   part of a request head may hold `0x01`, so hyper fails to parse the head and
//!   answers, in order after any earlier pipelined responses, with its own
//!   `400 Bad Request` and `Connection: close`; then the guard reports end of stream. The
//!   refused request never reaches a route.
//!
//! The guard steps aside (passthrough) for the HTTP/2 preface, after an `Upgrade` or
//! `CONNECT` request, and for input hyper refuses anyway (oversized heads, unparseable
//! lengths or chunk sizes), so hyper's own 400/431 answers stay unchanged.

mod guard;
pub(crate) mod head_scan;
mod tracker;

pub use guard::{Opening, RequestFramingGuard};
pub use tracker::{FramingTracker, Refusal};

/// Why a request head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3 item 3).
    ContentLengthWithTransferEncoding,
    /// Several `Content-Length` values that differ (RFC 9112 §6.3 item 5).
    ConflictingContentLengths,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejected::ContentLengthWithTransferEncoding => "request has both Content-Length and Transfer-Encoding",
            Rejected::ConflictingContentLengths => "request has conflicting Content-Length values",
        })
    }
}
