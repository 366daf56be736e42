use std::collections::VecDeque;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const LIMIT: usize = 64 * 1024;

/// A client whose bytes arrive in the given pieces, one per read.
struct Pieces(VecDeque<Vec<u8>>);

impl AsyncRead for Pieces {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(mut piece) = self.0.pop_front() {
            let k = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..k]);
            if k < piece.len() {
                self.0.push_front(piece.split_off(k));
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn pieces(stream: &[u8], cuts: &[usize]) -> Pieces {
    let mut out = VecDeque::new();
    let mut rest = stream;
    for &cut in cuts {
        let (piece, after) = rest.split_at(cut.min(rest.len()));
        out.push_back(piece.to_vec());
        rest = after;
    }
    out.push_back(rest.to_vec());
    Pieces(out.into_iter().filter(|p| !p.is_empty()).collect())
}

const SMUGGLING: &[u8] = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n\r\n";
/// Where the refused head starts in [`SMUGGLING`].
const REFUSED_AT: usize = 28;

#[tokio::test]
async fn a_refused_head_is_cut_short_and_marked_however_the_reads_fall() {
    for cut in 0..SMUGGLING.len() {
        for second in [1, 9, 200] {
            let mut guard = RequestFramingGuard::new(pieces(SMUGGLING, &[cut, second]), LIMIT);
            let mut got = Vec::new();
            guard.read_to_end(&mut got).await.unwrap();
            let delivered = got.strip_suffix(REFUSAL).unwrap_or_else(|| panic!("cuts {cut},{second}: {got:?}"));
            assert!(delivered.len() >= REFUSED_AT && SMUGGLING.starts_with(delivered), "cuts {cut},{second}: {got:?}");
            // What hyper parses where the refused head starts: an error, never a request.
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let parsed = httparse::Request::new(&mut headers).parse(&got[REFUSED_AT..]);
            assert!(parsed.is_err(), "cuts {cut},{second}: {parsed:?}");
        }
    }
}

#[tokio::test]
async fn accepted_streams_are_delivered_unchanged_through_the_opening() {
    let stream = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
    for cut in 0..stream.len() {
        let mut guard = RequestFramingGuard::new(pieces(stream, &[cut, 4]), LIMIT);
        assert_eq!(guard.opening().await.unwrap(), Opening::Http1);
        let mut got = Vec::new();
        guard.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, stream, "cut {cut}");
    }
}

#[tokio::test]
async fn opening_tells_the_http2_preface_from_http1_and_keeps_the_bytes() {
    let cases = [
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), Opening::Passthrough),
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
async fn a_refusal_in_the_opening_read_is_marked_too() {
    let mut guard = RequestFramingGuard::new(pieces(SMUGGLING, &[]), LIMIT);
    assert_eq!(guard.opening().await.unwrap(), Opening::Http1);
    let mut got = Vec::new();
    guard.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, [&SMUGGLING[..REFUSED_AT], REFUSAL].concat());
}

#[tokio::test]
async fn unread_bytes_are_read_again_first_and_buffers_are_released() {
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
    assert_eq!(guard.pending.capacity(), 0);
}
