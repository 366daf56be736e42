use super::*;

const LIMIT: usize = 64 * 1024;

/// Feeds `input` in pieces of the given sizes (the last piece takes the rest).
fn feed_split(input: &[u8], cuts: &[usize]) -> (Result<(), Refusal>, FramingTracker) {
    let mut tracker = FramingTracker::new(LIMIT);
    let mut rest = input;
    let mut result = Ok(());
    for &cut in cuts {
        let cut = cut.min(rest.len());
        result = result.and(tracker.feed(&rest[..cut]));
        rest = &rest[cut..];
    }
    result = result.and(tracker.feed(rest));
    (result, tracker)
}

fn feed_all(input: &[u8]) -> Result<(), Refusal> {
    feed_split(input, &[]).0
}

fn refused(why: Rejected, head_start: usize) -> Result<(), Refusal> {
    Err(Refusal { why, head_start: head_start as u64 })
}

#[test]
fn plain_requests_pass() {
    let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    let (result, tracker) = feed_split(input, &[3, 30]);
    assert_eq!(result, Ok(()));
    assert!(!tracker.head_in_progress() && !tracker.is_passthrough());
}

#[test]
fn only_heads_cut_across_reads_are_copied() {
    let mut tracker = FramingTracker::new(LIMIT);
    tracker.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n").unwrap();
    assert!(tracker.cut.is_none());
    tracker.feed(b"GET / HTTP/1.1\r\nHo").unwrap();
    assert!(tracker.head_in_progress());
    tracker.feed(b"st: a\r\n").unwrap();
    tracker.feed(b"\r\nGET /next").unwrap();
    assert_eq!(tracker.cut.as_ref().unwrap().bytes, b"GET /next");
    tracker.feed(b" HTTP/1.1\r\n\r\n").unwrap();
    assert!(!tracker.head_in_progress() && tracker.cut.is_none());
}

#[test]
fn both_length_and_transfer_encoding_are_refused_where_the_head_starts() {
    let input = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
    for cut in 0..input.len() {
        assert_eq!(feed_split(input, &[cut]).0, refused(Rejected::ContentLengthWithTransferEncoding, 29), "cut {cut}");
    }
    // Order and case do not matter; later input stays refused.
    let mut tracker = FramingTracker::new(LIMIT);
    let head = b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n";
    assert!(tracker.feed(head).is_err());
    assert_eq!(tracker.feed(b"GET / HTTP/1.1\r\n\r\n"), refused(Rejected::ContentLengthWithTransferEncoding, 0));
}

#[test]
fn differing_content_lengths_are_refused_equal_ones_accepted() {
    let result = feed_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
    assert_eq!(result, refused(Rejected::ConflictingContentLengths, 0));
    let result = feed_all(b"POST / HTTP/1.1\r\nContent-Length: 3, 5\r\n\r\nabcde");
    assert_eq!(result, refused(Rejected::ConflictingContentLengths, 0));
    let input = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n";
    assert_eq!(feed_all(input), Ok(()));
}

/// A body that looks like a refused head must not be mistaken for one, and the
/// request after it must be inspected: both need the framing followed exactly.
fn body_then_refused_head(body_framing: &str, body: &str) -> (Vec<u8>, usize) {
    let last = "GET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let input = format!("POST /a HTTP/1.1\r\nHost: a\r\n{body_framing}\r\n\r\n{body}{last}");
    let start = input.len() - last.len();
    (input.into_bytes(), start)
}

const LOOKALIKE: &str = "POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn content_length_bodies_are_followed_across_every_split() {
    let (input, start) = body_then_refused_head(&format!("Content-Length: {}", LOOKALIKE.len()), LOOKALIKE);
    for cut in 0..=input.len() {
        assert_eq!(feed_split(&input, &[cut]).0, refused(Rejected::ContentLengthWithTransferEncoding, start), "cut {cut}");
    }
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_are_followed_across_every_split() {
    let body = format!("5;ext=1\r\nhello\r\n{:x}\r\n{LOOKALIKE}\r\n0\r\nX-Trailer: t\r\n\r\n", LOOKALIKE.len());
    let (input, start) = body_then_refused_head("Transfer-Encoding: chunked", &body);
    let want = refused(Rejected::ContentLengthWithTransferEncoding, start);
    for cut in 0..=input.len() {
        for second in [1, 7] {
            assert_eq!(feed_split(&input, &[cut, second]).0, want, "cuts {cut},{second}");
        }
    }
    // Byte by byte.
    assert_eq!(feed_split(&input, &vec![1; input.len()]).0, want);
}

#[test]
fn pipelined_chunked_requests_all_pass() {
    let one = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let input = one.repeat(5).into_bytes();
    for cut in 0..input.len() {
        let (result, tracker) = feed_split(&input, &[cut, 3]);
        assert_eq!(result, Ok(()), "cut {cut}");
        assert!(!tracker.is_passthrough() && !tracker.head_in_progress());
    }
}

#[test]
fn http2_preface_upgrades_and_connect_step_aside() {
    let mut preface = H2_PREFACE.to_vec();
    preface.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    for cut in 0..preface.len() {
        let (result, tracker) = feed_split(&preface, &[cut]);
        assert_eq!(result, Ok(()));
        assert!(tracker.is_passthrough());
    }
    let lookalike = b"PRI * HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for cut in 0..lookalike.len() {
        assert_eq!(feed_split(lookalike, &[cut]).0, refused(Rejected::ContentLengthWithTransferEncoding, 0), "cut {cut}");
    }
    // Most of the preface, then not: it was a head with no header, and the next one
    // (which hyper refuses anyway) starts after it.
    let almost = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\rGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for cut in 0..almost.len() {
        assert_eq!(feed_split(almost, &[cut]).0, refused(Rejected::ContentLengthWithTransferEncoding, 18), "cut {cut}");
    }
    let smuggled = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let upgrade = [&b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\n"[..], smuggled].concat();
    let (result, tracker) = feed_split(&upgrade, &[]);
    assert_eq!(result, Ok(()));
    assert!(tracker.is_passthrough());
    let connect = [&b"CONNECT a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n"[..], smuggled].concat();
    assert_eq!(feed_all(&connect), Ok(()));
}

#[test]
fn input_hyper_refuses_itself_is_not_refused_here() {
    // Malformed, oversized, bad length, bad chunk size: hyper answers 400/431.
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(LIMIT + 10));
    for input in [
        b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(),
        big.into_bytes(),
    ] {
        let (result, tracker) = feed_split(&input, &[5]);
        assert_eq!(result, Ok(()));
        assert!(tracker.is_passthrough());
        assert!(tracker.cut.is_none(), "no copy is kept once stepped aside");
    }
    assert_eq!(feed_all(b"GET /\x01bad HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(()));
}
