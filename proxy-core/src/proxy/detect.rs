//! Protocol detection for ports without an appProtocol.

use std::time::Duration;

use tokio::net::TcpStream;

/// What the first bytes of a connection look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Http1,
    /// The HTTP/2 connection preface (prior knowledge / h2c).
    Http2,
    /// Anything else, or nothing within the timeout (server-first protocols).
    Opaque,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const METHODS: &[&[u8]] =
    &[b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"];

/// Classifies a prefix of the client's first bytes. `None` means "not enough bytes yet".
pub fn classify(prefix: &[u8]) -> Option<Detected> {
    if prefix.is_empty() {
        return None;
    }
    let n = prefix.len().min(H2_PREFACE.len());
    if prefix[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() { Some(Detected::Http2) } else { None };
    }
    let mut undecided = false;
    for method in METHODS {
        let want = method.len() + 1; // method followed by a space
        let n = prefix.len().min(want);
        let candidate: Vec<u8> = method.iter().copied().chain(std::iter::once(b' ')).collect();
        if prefix[..n] == candidate[..n] {
            if n == want {
                return Some(Detected::Http1);
            }
            undecided = true;
        }
    }
    if undecided {
        None
    } else {
        Some(Detected::Opaque)
    }
}

/// Peeks at the stream (without consuming) until the protocol is known or `timeout`
/// passes without a decision.
pub async fn detect(stream: &TcpStream, timeout: Duration) -> std::io::Result<Detected> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 32];
    let mut last_len = 0;
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await;
        let n = match peeked {
            Err(_) => return Ok(Detected::Opaque),
            Ok(result) => result?,
        };
        if n == 0 {
            // Client closed without sending anything.
            return Ok(Detected::Opaque);
        }
        if let Some(found) = classify(&buf[..n]) {
            return Ok(found);
        }
        if n == buf.len() {
            return Ok(Detected::Opaque);
        }
        if n == last_len {
            // peek returns at once while the data is unchanged: wait for more.
            if tokio::time::Instant::now() >= deadline {
                return Ok(Detected::Opaque);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        last_len = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefixes() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http1));
        assert_eq!(classify(b"DELETE /x"), Some(Detected::Http1));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(Detected::Http2));
        assert_eq!(classify(b"PRI * HT"), None);
        assert_eq!(classify(b"\x16\x03\x01"), Some(Detected::Opaque));
        assert_eq!(classify(b"GETX"), Some(Detected::Opaque));
        assert_eq!(classify(b"SSH-2.0"), Some(Detected::Opaque));
        assert_eq!(classify(b""), None);
    }
}
