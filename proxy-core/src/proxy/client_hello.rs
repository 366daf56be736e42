//! Reading the server name (SNI) from a TLS ClientHello without terminating TLS.
//!
//! The parser is bounds-checked throughout: every length is checked against the bytes
//! that are really there, and anything that is not a well-formed ClientHello is an
//! error, never a panic. A ClientHello split over several TLS records is reassembled.

use std::fmt;

/// The largest ClientHello accepted (handshake header and body). TLS records carry at
/// most 16 KiB; a ClientHello larger than that is refused.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// What the bytes read so far say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// The ClientHello is not complete yet: read more.
    Incomplete,
    /// A complete ClientHello with this server name (lowercase), or without one.
    Complete(Option<String>),
}

/// Why the bytes are not a ClientHello Ambit can route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a routable TLS ClientHello: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// A cursor over a byte slice whose reads fail instead of going out of bounds.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if self.bytes.len() < n {
            return Err(Malformed(what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a `len_bytes`-byte length prefix (1 or 2).
    fn vec(&mut self, len_bytes: usize, what: &'static str) -> Result<Reader<'a>, Malformed> {
        let len = match len_bytes {
            1 => usize::from(self.u8(what)?),
            _ => usize::from(self.u16(what)?),
        };
        Ok(Reader { bytes: self.take(len, what)? })
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Parses the start of a client's byte stream: TLS records carrying a ClientHello.
pub fn parse(stream: &[u8]) -> Result<Hello, Malformed> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = stream;
    loop {
        if rest.len() < RECORD_HEADER {
            return check_prefix(rest).map(|()| Hello::Incomplete);
        }
        if rest[0] != CONTENT_HANDSHAKE {
            return Err(Malformed("the first record is not a handshake record"));
        }
        if rest[1] != 3 {
            return Err(Malformed("unknown record version"));
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > MAX_CLIENT_HELLO {
            return Err(Malformed("bad record length"));
        }
        if rest.len() < RECORD_HEADER + len {
            return Ok(Hello::Incomplete);
        }
        handshake.extend_from_slice(&rest[RECORD_HEADER..RECORD_HEADER + len]);
        rest = &rest[RECORD_HEADER + len..];
        if handshake.len() >= 4 {
            if handshake[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(Malformed("the first handshake message is not a ClientHello"));
            }
            let body_len = usize::from(handshake[1]) << 16 | usize::from(handshake[2]) << 8 | usize::from(handshake[3]);
            if 4 + body_len > MAX_CLIENT_HELLO {
                return Err(Malformed("ClientHello too large"));
            }
            if handshake.len() >= 4 + body_len {
                return client_hello(&handshake[4..4 + body_len]).map(Hello::Complete);
            }
        }
        if handshake.len() > MAX_CLIENT_HELLO {
            return Err(Malformed("ClientHello too large"));
        }
    }
}

/// Rejects early what can already be seen not to be TLS from a partial record header.
fn check_prefix(prefix: &[u8]) -> Result<(), Malformed> {
    match prefix {
        [] => Ok(()),
        [t, ..] if *t != CONTENT_HANDSHAKE => Err(Malformed("the first record is not a handshake record")),
        [_, v, ..] if *v != 3 => Err(Malformed("unknown record version")),
        _ => Ok(()),
    }
}

/// The server name of a ClientHello body (after the 4-byte handshake header).
fn client_hello(body: &[u8]) -> Result<Option<String>, Malformed> {
    let mut r = Reader { bytes: body };
    r.take(2, "truncated legacy_version")?;
    r.take(32, "truncated random")?;
    let session_id = r.vec(1, "truncated session id")?;
    if session_id.bytes.len() > 32 {
        return Err(Malformed("session id longer than 32 bytes"));
    }
    let suites = r.vec(2, "truncated cipher suites")?;
    if suites.is_empty() || suites.bytes.len() % 2 != 0 {
        return Err(Malformed("bad cipher suite list"));
    }
    let compression = r.vec(1, "truncated compression methods")?;
    if compression.is_empty() {
        return Err(Malformed("no compression methods"));
    }
    if r.is_empty() {
        // A ClientHello without extensions (TLS 1.2 allows it): no server name.
        return Ok(None);
    }
    let mut extensions = r.vec(2, "truncated extensions")?;
    if !r.is_empty() {
        return Err(Malformed("bytes after the extensions"));
    }
    let mut server_name = None;
    let mut seen_sni = false;
    while !extensions.is_empty() {
        let kind = extensions.u16("truncated extension type")?;
        let data = extensions.vec(2, "truncated extension")?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        if seen_sni {
            return Err(Malformed("two server_name extensions"));
        }
        seen_sni = true;
        server_name = sni_extension(data)?;
    }
    Ok(server_name)
}

/// The host_name entry of a server_name extension (RFC 6066 section 3).
fn sni_extension(mut data: Reader<'_>) -> Result<Option<String>, Malformed> {
    let mut list = data.vec(2, "truncated server name list")?;
    if !data.is_empty() {
        return Err(Malformed("bytes after the server name list"));
    }
    if list.is_empty() {
        return Err(Malformed("empty server name list"));
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8("truncated server name type")?;
        let name = list.vec(2, "truncated server name")?;
        if name_type != NAME_TYPE_HOST_NAME {
            continue;
        }
        if host.is_some() {
            return Err(Malformed("two host names"));
        }
        let name = name.bytes;
        if name.is_empty() || name.len() > 255 {
            return Err(Malformed("bad host name length"));
        }
        if !name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
            return Err(Malformed("host name has characters a DNS name cannot have"));
        }
        let text = std::str::from_utf8(name).map_err(|_| Malformed("host name is not ASCII"))?;
        host = Some(text.trim_end_matches('.').to_ascii_lowercase());
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A ClientHello as rustls writes it (for `name`, or without SNI).
    fn rustls_hello(name: Option<&str>) -> Vec<u8> {
        use rustls::pki_types::ServerName;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.enable_sni = name.is_some();
        let server = ServerName::try_from(name.unwrap_or("ignored.example").to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    /// A hand-built ClientHello with the given extensions block (None: no extensions).
    fn hello(extensions: Option<Vec<u8>>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        if let Some(ext) = extensions {
            body.extend((ext.len() as u16).to_be_bytes());
            body.extend(ext);
        }
        wrap(&body)
    }

    fn wrap(body: &[u8]) -> Vec<u8> {
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![CONTENT_HANDSHAKE, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (t, n) in names {
            list.push(*t);
            list.extend((n.len() as u16).to_be_bytes());
            list.extend(*n);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        let mut ext = vec![0, 0];
        ext.extend((data.len() as u16).to_be_bytes());
        ext.extend(data);
        ext
    }

    #[test]
    fn reads_the_server_name_rustls_sends() {
        let bytes = rustls_hello(Some("V2.Example"));
        assert_eq!(parse(&bytes), Ok(Hello::Complete(Some("v2.example".into()))));
        assert_eq!(parse(&rustls_hello(None)), Ok(Hello::Complete(None)));
    }

    #[test]
    fn every_proper_prefix_is_incomplete_and_never_panics() {
        let bytes = rustls_hello(Some("a.example"));
        for n in 0..bytes.len() {
            assert_eq!(parse(&bytes[..n]), Ok(Hello::Incomplete), "prefix of {n} bytes");
        }
        // Bytes after the ClientHello (e.g. early data) do not matter.
        let mut more = bytes.clone();
        more.extend([23, 3, 3, 0, 1, 0]);
        assert_eq!(parse(&more), Ok(Hello::Complete(Some("a.example".into()))));
    }

    #[test]
    fn a_client_hello_split_over_records_is_reassembled() {
        let one = hello(Some(sni_ext(&[(0, b"split.example")])));
        let hs = &one[RECORD_HEADER..];
        let (a, b) = hs.split_at(10);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend([CONTENT_HANDSHAKE, 3, 1]);
            two.extend((part.len() as u16).to_be_bytes());
            two.extend(part);
        }
        assert_eq!(parse(&two[..two.len() - 1]), Ok(Hello::Incomplete));
        assert_eq!(parse(&two), Ok(Hello::Complete(Some("split.example".into()))));
    }

    #[test]
    fn hand_built_hellos() {
        assert_eq!(parse(&hello(None)), Ok(Hello::Complete(None)));
        let other_ext = vec![0, 10, 0, 2, 0, 0];
        let mut ext = other_ext.clone();
        ext.extend(sni_ext(&[(0, b"x.example.")]));
        assert_eq!(parse(&hello(Some(ext))), Ok(Hello::Complete(Some("x.example".into()))));
        assert_eq!(parse(&hello(Some(other_ext))), Ok(Hello::Complete(None)));
        // Unknown name types are skipped.
        assert_eq!(parse(&hello(Some(sni_ext(&[(9, b"zz"), (0, b"h.example")])))), Ok(Hello::Complete(Some("h.example".into()))));
    }

    #[test]
    fn malformed_hellos_are_errors() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("plain HTTP", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            ("not version 3", vec![22, 2, 0, 0, 1, 0]),
            ("zero-length record", vec![22, 3, 1, 0, 0]),
            ("oversized record", vec![22, 3, 1, 0xff, 0xff]),
            ("server hello", {
                let mut h = hello(None);
                h[5] = 2;
                h
            }),
            ("two SNI extensions", {
                let mut e = sni_ext(&[(0, b"a.example")]);
                e.extend(sni_ext(&[(0, b"b.example")]));
                hello(Some(e))
            }),
            ("two host names", hello(Some(sni_ext(&[(0, b"a.example"), (0, b"b.example")])))),
            ("empty host name", hello(Some(sni_ext(&[(0, b"")])))),
            ("NUL in host name", hello(Some(sni_ext(&[(0, b"a\0.example")])))),
            ("non-ASCII host name", hello(Some(sni_ext(&[(0, "é.example".as_bytes())])))),
            ("empty name list", hello(Some(vec![0, 0, 0, 2, 0, 0]))),
            ("extension longer than its block", hello(Some(vec![0, 0, 0, 9, 0, 1]))),
            ("name longer than the list", hello(Some(vec![0, 0, 0, 7, 0, 5, 0, 0, 9, b'a', b'b']))),
            ("trailing bytes after extensions", {
                let mut body = vec![3, 3];
                body.extend([0u8; 32]);
                body.extend([0, 0, 2, 0x13, 1, 1, 0, 0, 0, 0xAA]);
                wrap(&body)
            }),
            ("session id too long", {
                let mut body = vec![3, 3];
                body.extend([0u8; 32]);
                body.push(33);
                body.extend([0u8; 33]);
                body.extend([0, 2, 0x13, 1, 1, 0]);
                wrap(&body)
            }),
            ("odd cipher suite list", {
                let mut body = vec![3, 3];
                body.extend([0u8; 32]);
                body.extend([0, 0, 1, 0x13, 1, 0]);
                wrap(&body)
            }),
            ("no compression methods", {
                let mut body = vec![3, 3];
                body.extend([0u8; 32]);
                body.extend([0, 0, 2, 0x13, 1, 0]);
                wrap(&body)
            }),
            ("truncated random", wrap(&[3, 3, 1, 2, 3])),
            ("handshake length beyond the limit", vec![22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
        ];
        for (what, bytes) in cases {
            assert!(parse(&bytes).is_err(), "{what}: {:?}", parse(&bytes));
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes, and corruptions of a real ClientHello, never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse(&bytes);
            let mut prefixed = vec![22, 3, 1];
            prefixed.extend(&bytes);
            let _ = parse(&prefixed);
        }

        #[test]
        fn corrupted_real_hellos_never_panic(flips in proptest::collection::vec((0usize..2000, proptest::num::u8::ANY), 1..8)) {
            let mut bytes = hello(Some(sni_ext(&[(0, b"p.example")])));
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] = v;
            }
            let _ = parse(&bytes);
        }
    }
}
