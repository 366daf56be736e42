use super::*;

fn complete(bytes: &[u8]) -> (usize, Result<Framing, Rejected>) {
    match scan_head(bytes) {
        HeadScan::Complete { len, framing } => (len, framing),
        HeadScan::Partial => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn finds_the_end_and_the_framing_of_common_heads() {
    let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nnext";
    assert_eq!(complete(get), (get.len() - 4, Ok(Framing::None)));
    let post = b"POST / HTTP/1.1\nhost: a\ncontent-LENGTH:  12 \n\n";
    assert_eq!(complete(post), (post.len(), Ok(Framing::Length(12))));
    let chunked = b"\r\n\nPOST / HTTP/1.1\r\nTransfer-Encoding: gzip , chunked\r\n\r\n";
    assert_eq!(complete(chunked), (chunked.len(), Ok(Framing::Chunked)));
    assert_eq!(complete(b"CONNECT a:443 HTTP/1.1\r\n\r\n").1, Ok(Framing::Passthrough));
    assert_eq!(complete(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n").1, Ok(Framing::Passthrough));
    // Names that only start like a framing header are other headers.
    let lookalikes = b"GET / HTTP/1.1\r\nContent-Lengths: 3\r\nTransfer-Encodings: x\r\nUpgrade-Insecure-Requests: 1\r\nX-Content-Length: 5\r\n\r\n";
    assert_eq!(complete(lookalikes).1, Ok(Framing::None));
}

#[test]
fn ambiguous_framing_is_refused() {
    let both = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(complete(both).1, Err(Rejected::ContentLengthWithTransferEncoding));
    let two = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(complete(two).1, Err(Rejected::ConflictingContentLengths));
    let list = b"POST / HTTP/1.1\r\nContent-Length: 3, 5\r\n\r\n";
    assert_eq!(complete(list).1, Err(Rejected::ConflictingContentLengths));
    let equal = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(complete(equal).1, Ok(Framing::Length(3)));
    // Unreadable lengths and codings other than chunked are hyper's to answer.
    for head in [&b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n"[..], b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"] {
        assert_eq!(complete(head).1, Ok(Framing::Passthrough));
    }
}

#[test]
fn heads_without_their_empty_line_are_partial() {
    let head = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for end in 0..head.len() {
        assert_eq!(scan_head(&head[..end]), HeadScan::Partial, "{end}");
    }
}

/// The previous guard's framing rules, read from httparse's headers: the oracle.
fn httparse_framing(request: &httparse::Request<'_, '_>) -> Result<Framing, Rejected> {
    if request.method == Some("CONNECT") {
        return Ok(Framing::Passthrough);
    }
    let mut headers = FramingHeaders::default();
    for header in request.headers.iter() {
        let mut line = header.name.as_bytes().to_vec();
        line.push(b':');
        line.extend_from_slice(header.value);
        headers.line(&line);
    }
    headers.framing()
}

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn random_head(g: &mut Gen) -> Vec<u8> {
    const NAMES: &[&str] = &[
        "Host", "Content-Length", "content-length", "Transfer-Encoding", "TRANSFER-encoding", "Upgrade", "X-A",
        "Content-Lengthx", "C", "T", "U", "Upgrade2", "Connection",
    ];
    const VALUES: &[&str] = &["0", "12", " 7 ", "3, 3", "3,4", "chunked", "gzip, chunked", "chunked, gzip", "", "a:b", "x y", "+1"];
    const ENDS: &[&str] = &["\r\n", "\n"];
    let mut head = String::new();
    for _ in 0..g.next() % 3 {
        head.push_str(g.pick(ENDS));
    }
    head.push_str(g.pick(&["GET", "POST", "CONNECT", "PUT"]));
    head.push_str(" /p HTTP/1.1");
    head.push_str(g.pick(ENDS));
    for _ in 0..g.next() % 6 {
        head.push_str(g.pick(NAMES));
        head.push(':');
        head.push_str(g.pick(VALUES));
        head.push_str(g.pick(ENDS));
    }
    head.push_str(g.pick(ENDS));
    let mut bytes = head.into_bytes();
    // Now and then one byte replaced by a character that may break the head.
    if g.next().is_multiple_of(4) {
        let at = (g.next() % bytes.len() as u64) as usize;
        bytes[at] = g.pick(b"\r\n: \t\x01Aa\x7f");
    }
    let tails: [&[u8]; 3] = [b"", b"GET / HTTP/1.1\r\n\r\n", b"0\r\n\r\n"];
    bytes.extend_from_slice(g.pick(&tails));
    bytes
}

#[test]
fn agrees_with_httparse_on_every_head_httparse_accepts() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..50_000 {
        let bytes = random_head(&mut g);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = request.parse(&bytes) {
            accepted += 1;
            let want = (len, httparse_framing(&request));
            assert_eq!(complete(&bytes), want, "{:?}", String::from_utf8_lossy(&bytes));
            for end in 0..len {
                assert_eq!(scan_head(&bytes[..end]), HeadScan::Partial, "{end} of {:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
    assert!(accepted > 30_000, "only {accepted} heads were accepted: the generator is broken");
}

#[test]
fn a_scan_resumed_after_any_cut_finds_what_one_scan_finds() {
    let head = b"\r\nPOST /p HTTP/1.1\r\nHost: a\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nbody";
    let whole = scan_head(head);
    for cut in 0..head.len() {
        for second in cut..head.len() {
            let mut scanner = HeadScanner::default();
            let first = scanner.scan(&head[..cut]);
            if first != HeadScan::Partial {
                assert_eq!(first, whole, "{cut}");
                continue;
            }
            if scanner.scan(&head[..second]) == HeadScan::Partial {
                assert_eq!(scanner.scan(head), whole, "{cut} {second}");
            }
        }
    }
}
