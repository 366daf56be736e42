//! Request-framing guard for downstream HTTP/1 connections: rejects requests whose
//! framing is ambiguous (both `Content-Length` and `Transfer-Encoding`, or several
//! differing `Content-Length` values) with `400 Bad Request`, before hyper sees them.
//!
//! hyper accepts such a request (Transfer-Encoding wins, the Content-Length is dropped
//! and the connection closed after the answer), which is safe but not what RFC 9112
//! §6.3 recommends for a proxy, so the guard sits between the socket and hyper:
//!
//! * [`FramingTracker`] follows the byte stream message by message: it holds each
//!   request head back until it is complete, inspects it with `httparse`, then follows
//!   the body's framing (Content-Length or chunked, including trailers) to know where
//!   the next head starts. Pipelined requests keep working.
//! * [`RequestFramingGuard`] wraps the connection's IO. When the tracker rejects a head,
//!   that head is never delivered: hyper instead reads a request line it cannot parse
//!   and answers it, in order after any earlier pipelined responses, with its own
//!   `400 Bad Request` and `Connection: close`; then the guard reports end of stream.
//!
//! The guard steps aside (passthrough) for the HTTP/2 preface, after an `Upgrade` or
//! `CONNECT` request, and for input hyper rejects anyway (malformed or oversized heads,
//! unparseable lengths or chunk sizes), so hyper's own 400/431 answers stay unchanged.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Most headers in one request head (hyper answers more with 431 itself).
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line, chunk terminator or trailer section the tracker follows.
const MAX_CHUNK_LINE: usize = 4096;
/// What hyper reads instead of a rejected head: an invalid method token, which it
/// answers with `400 Bad Request` and closes.
const REJECTION: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";
/// Bytes read from the socket at once while inspecting.
const READ_CHUNK: usize = 8 * 1024;
/// Capacity of the released-bytes buffer kept across reads; larger ones are freed once drained.
const RETAINED_PENDING: usize = 1024;

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

/// Where in a chunked body the tracker is.
#[derive(Debug, PartialEq, Eq)]
enum Chunked {
    /// Reading a chunk-size line (bytes so far).
    Size(Vec<u8>),
    /// Inside chunk data: bytes left.
    Data(u64),
    /// After chunk data, up to its line end (bytes seen).
    DataEnd(usize),
    /// After the last chunk: trailer lines until an empty one (length of the current
    /// line without CR, total bytes seen).
    Trailers { line: usize, total: usize },
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Before the first byte: may still be the HTTP/2 preface.
    Start,
    /// Between messages or inside a head (held back until complete).
    Head,
    /// Inside a body of known length: bytes left.
    FixedBody(u64),
    Chunked(Chunked),
    /// Not following any more (HTTP/2, upgraded, or left to hyper's own checks).
    Passthrough,
    /// A head was refused; nothing more is delivered.
    Rejected(Rejected),
}

/// Follows the request stream of one HTTP/1 connection (see the module docs).
#[derive(Debug)]
pub struct FramingTracker {
    state: State,
    /// Bytes of an incomplete head (or of a possible HTTP/2 preface).
    held: Vec<u8>,
    /// Largest head held back; a longer one is released for hyper to answer 431.
    max_head: usize,
}

/// How the body after an accepted head is framed.
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Let hyper decide (upgrade, CONNECT, or something hyper rejects itself).
    Passthrough,
}

impl FramingTracker {
    /// A tracker that holds back heads up to `max_head` bytes.
    pub fn new(max_head: usize) -> Self {
        Self { state: State::Start, held: Vec::new(), max_head }
    }

    /// Whether the tracker has stepped aside for the rest of the connection.
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Whether a request head is being received: nothing read yet on a new connection,
    /// or part of a head held back.
    pub fn head_in_progress(&self) -> bool {
        match self.state {
            State::Start => true,
            State::Head => !self.held.is_empty(),
            _ => false,
        }
    }

    /// Feeds bytes read from the client and appends to `release` the bytes that may be
    /// handed to the HTTP server now. A refused head is never released; once refused,
    /// every later call fails too.
    pub fn feed(&mut self, mut data: &[u8], release: &mut Vec<u8>) -> Result<(), Rejected> {
        loop {
            if let State::Rejected(why) = self.state {
                return Err(why);
            }
            if data.is_empty() {
                return Ok(());
            }
            match &mut self.state {
                State::Rejected(_) => unreachable!("handled above"),
                State::Passthrough => {
                    release.extend_from_slice(data);
                    return Ok(());
                }
                State::Start => {
                    self.held.extend_from_slice(data);
                    let n = self.held.len().min(H2_PREFACE.len());
                    if self.held[..n] == H2_PREFACE[..n] {
                        if n == H2_PREFACE.len() {
                            self.state = State::Passthrough;
                            release.append(&mut self.held);
                        }
                        return Ok(());
                    }
                    self.state = State::Head;
                    let held = std::mem::take(&mut self.held);
                    return self.feed(&held, release);
                }
                State::FixedBody(left) => {
                    let k = (*left).min(data.len() as u64) as usize;
                    release.extend_from_slice(&data[..k]);
                    *left -= k as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                    data = &data[k..];
                }
                State::Chunked(Chunked::Data(left)) => {
                    let k = (*left).min(data.len() as u64) as usize;
                    release.extend_from_slice(&data[..k]);
                    *left -= k as u64;
                    if *left == 0 {
                        self.state = State::Chunked(Chunked::DataEnd(0));
                    }
                    data = &data[k..];
                }
                State::Chunked(_) => {
                    let byte = data[0];
                    release.push(byte);
                    data = &data[1..];
                    self.chunk_control_byte(byte);
                }
                State::Head => data = self.head(data, release)?,
            }
        }
    }

    /// Releases held bytes (at end of stream, so the server sees what the client sent).
    pub fn flush_held(&mut self, release: &mut Vec<u8>) {
        if !matches!(self.state, State::Rejected(_)) {
            release.append(&mut self.held);
        }
    }

    /// One byte of a chunk-size line, chunk terminator or trailer section.
    fn chunk_control_byte(&mut self, byte: u8) {
        let State::Chunked(chunked) = &mut self.state else { return };
        match chunked {
            Chunked::Size(line) => {
                if byte != b'\n' {
                    line.push(byte);
                    if line.len() > MAX_CHUNK_LINE {
                        self.state = State::Passthrough;
                    }
                    return;
                }
                self.state = match parse_chunk_size(line) {
                    Some(0) => State::Chunked(Chunked::Trailers { line: 0, total: 0 }),
                    Some(size) => State::Chunked(Chunked::Data(size)),
                    None => State::Passthrough,
                };
            }
            Chunked::Data(_) => unreachable!("chunk data is handled in bulk"),
            Chunked::DataEnd(seen) => {
                *seen += 1;
                if byte == b'\n' {
                    self.state = State::Chunked(Chunked::Size(Vec::new()));
                } else if *seen > 2 {
                    // hyper requires CRLF here and fails the body otherwise.
                    self.state = State::Passthrough;
                }
            }
            Chunked::Trailers { line, total } => {
                *total += 1;
                if byte == b'\n' {
                    if *line == 0 {
                        self.state = State::Head;
                        return;
                    }
                    *line = 0;
                } else if byte != b'\r' {
                    *line += 1;
                }
                if *total > MAX_CHUNK_LINE * 16 {
                    self.state = State::Passthrough;
                }
            }
        }
    }

    /// Head bytes: returns the input left after the head once it is complete (or empty
    /// when everything was held or released).
    fn head<'a>(&mut self, data: &'a [u8], release: &mut Vec<u8>) -> Result<&'a [u8], Rejected> {
        let before = self.held.len();
        // Parse straight from the input when nothing is held (the common case).
        let parsed = if before == 0 {
            inspect_head(data)
        } else {
            self.held.extend_from_slice(data);
            inspect_head(&self.held)
        };
        match parsed {
            HeadParse::Partial => {
                if before == 0 {
                    self.held.extend_from_slice(data);
                }
                if self.held.len() > self.max_head {
                    release.append(&mut self.held);
                    self.state = State::Passthrough;
                }
                Ok(&[])
            }
            HeadParse::Complete(len, _) if len > self.max_head => {
                // hyper answers 431 itself.
                if before == 0 {
                    release.extend_from_slice(data);
                } else {
                    release.append(&mut self.held);
                }
                self.state = State::Passthrough;
                Ok(&[])
            }
            HeadParse::Invalid => {
                if before == 0 {
                    release.extend_from_slice(data);
                } else {
                    release.append(&mut self.held);
                }
                self.state = State::Passthrough;
                Ok(&[])
            }
            HeadParse::Complete(len, framing) => {
                let framing = match framing {
                    Ok(framing) => framing,
                    Err(why) => {
                        self.held.clear();
                        self.state = State::Rejected(why);
                        return Err(why);
                    }
                };
                if before == 0 {
                    release.extend_from_slice(&data[..len]);
                } else {
                    release.extend_from_slice(&self.held[..len]);
                    self.held.clear();
                }
                self.state = match framing {
                    Framing::None | Framing::Length(0) => State::Head,
                    Framing::Length(n) => State::FixedBody(n),
                    Framing::Chunked => State::Chunked(Chunked::Size(Vec::new())),
                    Framing::Passthrough => State::Passthrough,
                };
                Ok(&data[len - before..])
            }
        }
    }
}

enum HeadParse {
    Partial,
    /// hyper rejects it itself (400/431): step aside.
    Invalid,
    /// Head length and the body framing (or why the head is refused).
    Complete(usize, Result<Framing, Rejected>),
}

fn inspect_head(bytes: &[u8]) -> HeadParse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => HeadParse::Partial,
        Err(_) => HeadParse::Invalid,
        Ok(httparse::Status::Complete(len)) => HeadParse::Complete(len, framing(&request)),
    }
}

fn framing(request: &httparse::Request<'_, '_>) -> Result<Framing, Rejected> {
    if request.method == Some("CONNECT") {
        return Ok(Framing::Passthrough);
    }
    let mut lengths: Option<u64> = None;
    let mut has_length = false;
    let mut last_coding: Option<&[u8]> = None;
    let mut upgrade = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            for value in header.value.split(|&b| b == b',') {
                let Some(n) = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<u64>().ok()) else {
                    return Ok(Framing::Passthrough); // hyper answers 400
                };
                match lengths {
                    Some(seen) if seen != n => return Err(Rejected::ConflictingContentLengths),
                    _ => lengths = Some(n),
                }
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if let Some(coding) = header.value.split(|&b| b == b',').map(trim).rfind(|c| !c.is_empty()) {
                last_coding = Some(coding);
            } else if last_coding.is_none() {
                last_coding = Some(b"");
            }
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if has_length && last_coding.is_some() {
        return Err(Rejected::ContentLengthWithTransferEncoding);
    }
    if upgrade {
        return Ok(Framing::Passthrough);
    }
    match (last_coding, lengths) {
        (Some(coding), _) if coding.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        (Some(_), _) => Ok(Framing::Passthrough), // hyper answers 400
        (None, Some(n)) => Ok(Framing::Length(n)),
        (None, None) if has_length => Ok(Framing::Passthrough),
        (None, None) => Ok(Framing::None),
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// A chunk-size line (without its LF): hex size, optional extensions after `;`.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let size = line.split(|&b| b == b';').next()?;
    let size = std::str::from_utf8(trim(size)).ok()?;
    if size.is_empty() {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

/// The downstream IO of an HTTP/1 connection with a [`FramingTracker`] in its read
/// path (see the module docs). Writes go straight through.
pub struct RequestFramingGuard<S> {
    inner: S,
    tracker: FramingTracker,
    /// Bytes released by the tracker, not yet read by the server.
    pending: Vec<u8>,
    pending_pos: usize,
    eof: bool,
    /// Longest time a head may take (see [`RequestFramingGuard::with_head_timeout`]).
    head_timeout: Option<Duration>,
    /// Armed while a head is in progress.
    head_deadline: Option<Pin<Box<Sleep>>>,
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
    /// a head's first byte. Heads are held back here until complete, so the server's own
    /// header timer cannot tell a slow head from an idle connection.
    pub fn with_head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = Some(timeout);
        self.update_head_timer();
        self
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

/// How a connection opens, as far as the guard is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// HTTP/1 request heads (or the end of the stream): the guard follows them.
    Http1,
    /// The HTTP/2 preface, or input the server refuses itself: the guard stepped aside.
    Passthrough,
}

impl<S> RequestFramingGuard<S> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Puts back, ahead of anything still buffered, bytes the server had read but not
    /// used (they were inspected and released already).
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
        if self.tracker.held.is_empty() {
            self.tracker.held = Vec::new();
        }
    }
}

impl<S: AsyncRead + Unpin> RequestFramingGuard<S> {
    /// Reads until it is known whether the connection opens with the HTTP/2 preface;
    /// what was read stays buffered for the server. Fails when the head deadline passes.
    pub async fn opening(&mut self) -> io::Result<Opening> {
        std::future::poll_fn(|cx| loop {
            if self.eof || self.tracker.state != State::Start {
                let passthrough = self.tracker.is_passthrough() && !self.eof;
                return Poll::Ready(Ok(if passthrough { Opening::Passthrough } else { Opening::Http1 }));
            }
            ready!(self.poll_ingest(cx))?;
        })
        .await
    }

    /// Reads once from the client and feeds the tracker (released bytes go to
    /// `pending`). Pending while nothing can be read, or the head deadline's error.
    fn poll_ingest(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A stack buffer (uninitialised: not zeroed on every read), so that no
        // per-connection read buffer outlives the read.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut scratch = ReadBuf::uninit(&mut chunk);
        if Pin::new(&mut self.inner).poll_read(cx, &mut scratch)?.is_pending() {
            return self.poll_head_deadline(cx);
        }
        let read = scratch.filled();
        if read.is_empty() {
            self.eof = true;
            self.tracker.flush_held(&mut self.pending);
            return Poll::Ready(Ok(()));
        }
        if let Err(why) = self.tracker.feed(read, &mut self.pending) {
            tracing::info!(reason = %why, "refusing an ambiguously framed request with 400");
            self.pending.extend_from_slice(REJECTION);
            self.eof = true;
        }
        self.update_head_timer();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RequestFramingGuard<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_pos < this.pending.len() {
                let k = buf.remaining().min(this.pending.len() - this.pending_pos);
                buf.put_slice(&this.pending[this.pending_pos..this.pending_pos + k]);
                this.pending_pos += k;
                if this.pending_pos == this.pending.len() {
                    // Idle connections keep no buffer beyond a small one.
                    if this.pending.capacity() > RETAINED_PENDING {
                        this.pending = Vec::new();
                    } else {
                        this.pending.clear();
                    }
                    this.pending_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.tracker.is_passthrough() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            ready!(this.poll_ingest(cx))?;
        }
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
mod tests {
    use super::*;

    const LIMIT: usize = 64 * 1024;

    /// Feeds `input` in pieces of the given sizes (the last piece takes the rest).
    fn feed_split(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Result<(), Rejected>, FramingTracker) {
        let mut tracker = FramingTracker::new(LIMIT);
        let mut out = Vec::new();
        let mut rest = input;
        let mut result = Ok(());
        for &cut in cuts {
            let cut = cut.min(rest.len());
            result = result.and(tracker.feed(&rest[..cut], &mut out));
            rest = &rest[cut..];
        }
        result = result.and(tracker.feed(rest, &mut out));
        (out, result, tracker)
    }

    fn feed_all(input: &[u8]) -> (Vec<u8>, Result<(), Rejected>) {
        let (out, result, _) = feed_split(input, &[]);
        (out, result)
    }

    #[test]
    fn plain_requests_pass_unchanged() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(feed_all(input), (input.to_vec(), Ok(())));
    }

    #[test]
    fn incomplete_heads_are_held_until_complete() {
        let mut tracker = FramingTracker::new(LIMIT);
        let mut out = Vec::new();
        tracker.feed(b"GET / HTTP/1.1\r\nHo", &mut out).unwrap();
        assert!(out.is_empty());
        tracker.feed(b"st: a\r\n", &mut out).unwrap();
        assert!(out.is_empty());
        tracker.feed(b"\r\nGET /next", &mut out).unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut end = Vec::new();
        tracker.flush_held(&mut end);
        assert_eq!(end, b"GET /next");
    }

    #[test]
    fn both_length_and_transfer_encoding_are_refused_and_never_released() {
        let input = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
        let (out, result) = feed_all(input);
        assert_eq!(result, Err(Rejected::ContentLengthWithTransferEncoding));
        assert_eq!(out, b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
        // Order and case do not matter; later input stays refused.
        let mut tracker = FramingTracker::new(LIMIT);
        let mut out = Vec::new();
        let head = b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n";
        assert!(tracker.feed(head, &mut out).is_err());
        assert!(tracker.feed(b"GET / HTTP/1.1\r\n\r\n", &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn differing_content_lengths_are_refused_equal_ones_accepted() {
        let (_, result) = feed_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
        assert_eq!(result, Err(Rejected::ConflictingContentLengths));
        let (_, result) = feed_all(b"POST / HTTP/1.1\r\nContent-Length: 3, 5\r\n\r\nabcde");
        assert_eq!(result, Err(Rejected::ConflictingContentLengths));
        let input = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n";
        assert_eq!(feed_all(input), (input.to_vec(), Ok(())));
    }

    /// A body that looks like a refused head must not be mistaken for one, and the
    /// request after it must be inspected: both need the framing followed exactly.
    fn body_then_refused_head(body_framing: &str, body: &str) -> Vec<u8> {
        format!(
            "POST /a HTTP/1.1\r\nHost: a\r\n{body_framing}\r\n\r\n{body}\
             GET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes()
    }

    const LOOKALIKE: &str = "POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn content_length_bodies_are_followed_across_every_split() {
        let input = body_then_refused_head(&format!("Content-Length: {}", LOOKALIKE.len()), LOOKALIKE);
        let first_len = input.len() - b"GET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".len();
        for cut in 0..=input.len() {
            let (out, result, _) = feed_split(&input, &[cut]);
            assert_eq!(result, Err(Rejected::ContentLengthWithTransferEncoding), "cut {cut}");
            assert_eq!(out, &input[..first_len], "cut {cut}");
        }
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers_are_followed_across_every_split() {
        let body = format!("5;ext=1\r\nhello\r\n{:x}\r\n{LOOKALIKE}\r\n0\r\nX-Trailer: t\r\n\r\n", LOOKALIKE.len());
        let input = body_then_refused_head("Transfer-Encoding: chunked", &body);
        let first_len = input.len() - b"GET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".len();
        for cut in 0..=input.len() {
            for second in [1, 7] {
                let (out, result, _) = feed_split(&input, &[cut, second]);
                assert_eq!(result, Err(Rejected::ContentLengthWithTransferEncoding), "cuts {cut},{second}");
                assert_eq!(out, &input[..first_len], "cuts {cut},{second}");
            }
        }
        // Byte by byte.
        let cuts = vec![1; input.len()];
        let (out, result, _) = feed_split(&input, &cuts);
        assert_eq!(result, Err(Rejected::ContentLengthWithTransferEncoding));
        assert_eq!(out, &input[..first_len]);
    }

    #[test]
    fn pipelined_chunked_requests_all_pass() {
        let one = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let input = one.repeat(5).into_bytes();
        for cut in 0..input.len() {
            let (out, result, tracker) = feed_split(&input, &[cut, 3]);
            assert_eq!((out, result), (input.clone(), Ok(())), "cut {cut}");
            assert!(!tracker.is_passthrough());
        }
    }

    #[test]
    fn http2_preface_upgrades_and_connect_step_aside() {
        let mut preface = H2_PREFACE.to_vec();
        preface.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        for cut in 0..preface.len() {
            let (out, result, tracker) = feed_split(&preface, &[cut]);
            assert_eq!((out, result), (preface.clone(), Ok(())));
            assert!(tracker.is_passthrough());
        }
        let upgrade = b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
        let (out, result, tracker) = feed_split(upgrade, &[]);
        assert_eq!((out, result), (upgrade.to_vec(), Ok(())));
        assert!(tracker.is_passthrough());
        let connect = b"CONNECT a:443 HTTP/1.1\r\n\r\nraw";
        assert_eq!(feed_all(connect), (connect.to_vec(), Ok(())));
    }

    #[test]
    fn input_hyper_refuses_itself_is_released_unchanged() {
        // Malformed, oversized, bad length, bad chunk size: hyper answers 400/431.
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(LIMIT + 10));
        for input in [
            b"GET /\x01bad HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            big.into_bytes(),
            b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(),
        ] {
            let (out, result, tracker) = feed_split(&input, &[5]);
            assert_eq!(result, Ok(()));
            assert_eq!(out, input);
            assert!(tracker.is_passthrough());
        }
    }

    #[tokio::test]
    async fn guard_delivers_accepted_bytes_and_a_rejection_line() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64);
        let mut guard = RequestFramingGuard::new(server, LIMIT);
        let writer = tokio::spawn(async move {
            client.write_all(b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 2\r\nTransfer-").await.unwrap();
            client.write_all(b"Encoding: chunked\r\n\r\n0\r\n\r\n").await.unwrap();
            client
        });
        let mut got = Vec::new();
        guard.read_to_end(&mut got).await.unwrap();
        let _client = writer.await.unwrap();
        let mut want = b"GET /1 HTTP/1.1\r\n\r\n".to_vec();
        want.extend_from_slice(REJECTION);
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn opening_tells_the_http2_preface_from_http1_and_keeps_the_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cases = [
            (H2_PREFACE.to_vec(), Opening::Passthrough),
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), Opening::Http1),
            (b"PROPFIND / HTTP/1.1\r\n\r\n".to_vec(), Opening::Http1),
            (b"PRI".to_vec(), Opening::Http1),
            (Vec::new(), Opening::Http1),
        ];
        for (input, want) in cases {
            let (mut client, server) = tokio::io::duplex(1024);
            let mut guard = RequestFramingGuard::new(server, LIMIT);
            client.write_all(&input).await.unwrap();
            drop(client);
            assert_eq!(guard.opening().await.unwrap(), want, "{input:?}");
            let mut got = Vec::new();
            guard.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, input);
        }
    }

    #[tokio::test]
    async fn unread_bytes_are_read_again_first_and_buffers_are_released() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guard = RequestFramingGuard::new(server, LIMIT);
        client.write_all(b"GET /2 HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(guard.opening().await.unwrap(), Opening::Http1);
        assert!(guard.has_work());
        guard.unread(b"GET /1 HTTP/1.1\r\n\r\n");
        drop(client);
        let mut got = Vec::new();
        guard.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
        guard.release_buffer();
        assert_eq!((guard.pending.capacity(), guard.tracker.held.capacity()), (0, 0));
    }
}
