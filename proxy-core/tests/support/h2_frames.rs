//! Raw HTTP/2 frames for abuse tests (rapid reset, CONTINUATION floods): written by
//! hand so that the client can misbehave in ways a real HTTP/2 library refuses to.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: 9-byte header and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The client preface and an empty SETTINGS frame.
pub fn client_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// An HPACK block for `GET http://x/`: static-table entries and one literal.
pub fn get_request_block() -> Vec<u8> {
    // :method GET, :scheme http, :path /, then :authority "x" (literal, not indexed).
    vec![0x82, 0x86, 0x84, 0x01, 0x01, b'x']
}

/// An HPACK literal header `x-f: <value>` (not indexed), `value` < 127 bytes.
pub fn literal_header(value: &[u8]) -> Vec<u8> {
    assert!(value.len() < 127);
    let mut out = vec![0x00, 3, b'x', b'-', b'f', value.len() as u8];
    out.extend_from_slice(value);
    out
}

/// What the server sent until it closed the connection or `limit` passed.
#[derive(Debug, Default)]
pub struct ServerFrames {
    /// GOAWAY's error code, if one came.
    pub goaway: Option<u32>,
    /// Whether the connection was closed (EOF or reset) within the limit.
    pub closed: bool,
}

/// Reads frames until a GOAWAY, the connection's end, or `limit`.
pub async fn read_until_goaway<R: AsyncRead + Unpin>(reader: &mut R, limit: Duration) -> ServerFrames {
    let mut seen = ServerFrames::default();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if reader.read_exact(&mut head).await.is_err() {
                seen.closed = true;
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if reader.read_exact(&mut payload).await.is_err() {
                seen.closed = true;
                return;
            }
            if head[3] == GOAWAY && payload.len() >= 8 {
                seen.goaway = Some(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]));
                return;
            }
        }
    };
    let _ = tokio::time::timeout(limit, read).await;
    seen
}

/// This process's resident set size, in KiB (from /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
