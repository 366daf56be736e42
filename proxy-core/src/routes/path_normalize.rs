//! Request path normalisation, applied to every HTTP request before routing (and the
//! request is forwarded with the normalised path, so the backend sees the path that
//! was matched).
//!
//! The policy (Istio's `MERGE_SLASHES`, with Envoy's `KEEP_UNCHANGED` for escaped
//! slashes):
//!
//! 1. every `%` must start a valid escape (`%` and two hex digits), else the request is
//!    refused ([`InvalidPath`], answered with 400);
//! 2. escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded and the hex
//!    digits of all other escapes are upper-cased (RFC 3986 §6.2.2.1, §6.2.2.2);
//! 3. a backslash is a `/` (as in Envoy's `normalize_path`, which Istio's `BASE` turns
//!    on), and runs of `/` are merged into one;
//! 4. `.` and `..` segments are removed (RFC 3986 §5.2.4); `..` at the root stays at
//!    the root.
//!
//! Escaped slashes and backslashes (`%2F`, `%5C`) are kept as they are (Envoy's
//! `KEEP_UNCHANGED`): they are never path separators, so they neither merge nor take
//! part in dot-segment removal, and a route must name them escaped to match them.
//!
//! Only origin paths are normalised (they start with `/`); the query string is never
//! touched.

use std::borrow::Cow;
use std::fmt;

/// A path with a `%` that does not start a `%XX` escape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPath {
    /// Byte offset of the bad `%`.
    pub offset: usize,
}

impl fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid percent-encoding at byte {} of the path", self.offset)
    }
}

impl std::error::Error for InvalidPath {}

/// Normalises an origin path (see the module docs). Borrows when nothing changes, which
/// is the common case. A path that does not start with `/` (`*`, or empty) is returned
/// unchanged.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, InvalidPath> {
    if !path.starts_with('/') {
        return Ok(Cow::Borrowed(path));
    }
    let mut decoded = normalize_escapes(path)?;
    if decoded.contains('\\') {
        decoded = Cow::Owned(decoded.replace('\\', "/"));
    }
    if !needs_segment_pass(&decoded) {
        return Ok(decoded);
    }
    Ok(Cow::Owned(merge_and_remove_dots(&decoded)))
}

/// Steps 1 and 2: checks every escape, decodes the unreserved ones and upper-cases the
/// rest. Bytes outside escapes (non-ASCII ones too, from an HTTP/2 `:path`) are copied
/// as they are.
fn normalize_escapes(path: &str) -> Result<Cow<'_, str>, InvalidPath> {
    let bytes = path.as_bytes();
    let mut out: Option<String> = None;
    // `path[copied..i]` is not yet in `out`.
    let mut copied = 0;
    let mut i = 0;
    while let Some(offset) = path[i..].find('%') {
        i += offset;
        let (high, low) = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => (h, l),
            _ => return Err(InvalidPath { offset: i }),
        };
        let value = hex_value(high) << 4 | hex_value(low);
        if is_unreserved(value) || high.is_ascii_lowercase() || low.is_ascii_lowercase() {
            let out = out.get_or_insert_with(|| String::with_capacity(path.len()));
            out.push_str(&path[copied..i]);
            if is_unreserved(value) {
                out.push(value as char);
            } else {
                out.push('%');
                out.push(high.to_ascii_uppercase() as char);
                out.push(low.to_ascii_uppercase() as char);
            }
            copied = i + 3;
        }
        i += 3;
    }
    Ok(match out {
        Some(mut out) => {
            out.push_str(&path[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(path),
    })
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// RFC 3986 §2.3 unreserved characters.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Whether the path has repeated slashes or a `.` or `..` segment.
fn needs_segment_pass(path: &str) -> bool {
    path.contains("//") || path.split('/').any(|segment| segment == "." || segment == "..")
}

/// Steps 3 and 4 over the segments of an absolute path.
fn merge_and_remove_dots(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = path[1..].split('/').peekable();
    // Whether the output ends with `/`: the last input segment was empty, `.` or `..`.
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" | "." => trailing_slash = last,
            ".." => {
                kept.pop();
                trailing_slash = last;
            }
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> String {
        normalize_path(path).expect("valid path").into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for path in ["/", "/prefix/one/two", "/a/b/", "/a%2Fb", "/%C3%A9t%C3%A9", "/v1/x.y/z~"] {
            assert!(matches!(normalize_path(path), Ok(Cow::Borrowed(p)) if p == path), "{path}");
        }
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(norm("/public/../admin"), "/admin");
        assert_eq!(norm("/public/./admin"), "/public/admin");
        assert_eq!(norm("/a/b/c/./../../g"), "/a/g");
        assert_eq!(norm("/a/.."), "/");
        assert_eq!(norm("/a/."), "/a/");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/.."), "/");
        assert_eq!(norm("/../../x"), "/x");
        assert_eq!(norm("/a/.../b"), "/a/.../b");
        assert_eq!(norm("/a/..b/c."), "/a/..b/c.");
    }

    /// RFC 3986 §5.4.1 and §5.4.2, resolved against the base path `/b/c/d;p`: the
    /// merged path is the base's directory `/b/c/` followed by the reference.
    #[test]
    fn rfc3986_section_5_4_examples() {
        let vectors = [
            ("g", "/b/c/g"),
            ("./g", "/b/c/g"),
            ("g/", "/b/c/g/"),
            (";x", "/b/c/;x"),
            ("g;x", "/b/c/g;x"),
            (".", "/b/c/"),
            ("./", "/b/c/"),
            ("..", "/b/"),
            ("../", "/b/"),
            ("../g", "/b/g"),
            ("../..", "/"),
            ("../../", "/"),
            ("../../g", "/g"),
            ("../../../g", "/g"),
            ("../../../../g", "/g"),
            ("g.", "/b/c/g."),
            (".g", "/b/c/.g"),
            ("g..", "/b/c/g.."),
            ("..g", "/b/c/..g"),
            ("./../g", "/b/g"),
            ("./g/.", "/b/c/g/"),
            ("g/./h", "/b/c/g/h"),
            ("g/../h", "/b/c/h"),
            ("g;x=1/./y", "/b/c/g;x=1/y"),
            ("g;x=1/../y", "/b/c/y"),
        ];
        for (reference, expected) in vectors {
            assert_eq!(norm(&format!("/b/c/{reference}")), expected, "{reference}");
        }
        // Absolute references: `/./g` and `/../g` resolve to `/g`.
        assert_eq!(norm("/./g"), "/g");
        assert_eq!(norm("/../g"), "/g");
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_upper_cased() {
        assert_eq!(norm("/%7Euser/%41%62%2d%5f%2E"), "/~user/Ab-_.");
        assert_eq!(norm("/a%2fb%c3%a9"), "/a%2Fb%C3%A9");
        assert_eq!(norm("/x%20y"), "/x%20y");
        // Encoded dots are dots: decoded first, then removed.
        assert_eq!(norm("/public/%2e%2e/admin"), "/admin");
        assert_eq!(norm("/public/.%2E/admin"), "/admin");
    }

    #[test]
    fn repeated_slashes_merge_encoded_slashes_stay() {
        assert_eq!(norm("//admin"), "/admin");
        assert_eq!(norm("/a//b///c//"), "/a/b/c/");
        assert_eq!(norm("///"), "/");
        assert_eq!(norm("/public/..%2Fadmin"), "/public/..%2Fadmin");
        assert_eq!(norm("/public%2F..%2Fadmin"), "/public%2F..%2Fadmin");
        assert_eq!(norm("/public\\..\\admin"), "/admin");
        assert_eq!(norm("/public%5C..%5cadmin"), "/public%5C..%5Cadmin");
        assert_eq!(norm("/a/%2F/../b"), "/a/b");
    }

    #[test]
    fn bad_escapes_are_refused() {
        for (path, offset) in [("/%zz", 1), ("/a%", 2), ("/a%4", 2), ("/ok%41/%g1", 7), ("/%%41", 1)] {
            assert_eq!(normalize_path(path), Err(InvalidPath { offset }), "{path}");
        }
    }

    #[test]
    fn non_origin_targets_are_left_alone() {
        assert_eq!(norm("*"), "*");
        assert_eq!(norm(""), "");
    }

    #[test]
    fn non_ascii_bytes_survive_escape_normalisation() {
        assert_eq!(norm("/é/%41/ü"), "/é/A/ü");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Paths built from the characters that matter: separators, dots, escapes.
        fn path() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("%2e".to_owned()),
                Just("%2F".to_owned()),
                Just("%41".to_owned()),
                Just("%c3".to_owned()),
                Just("\\".to_owned()),
                "[a-zA-Z0-9~_-]{1,3}",
            ];
            proptest::collection::vec(piece, 0..16).prop_map(|pieces| format!("/{}", pieces.concat()))
        }

        proptest! {
            #[test]
            fn normalising_is_idempotent(p in path()) {
                let once = norm(&p);
                prop_assert_eq!(norm(&once), once.clone());
            }

            #[test]
            fn result_has_no_dot_or_empty_segments(p in path()) {
                let out = norm(&p);
                prop_assert!(out.starts_with('/'));
                let inner = out[1..].strip_suffix('/').unwrap_or(&out[1..]);
                if !inner.is_empty() {
                    for segment in inner.split('/') {
                        prop_assert!(!matches!(segment, "" | "." | ".."), "{} -> {}", p, out);
                    }
                }
            }

            #[test]
            fn escapes_left_are_upper_case_and_reserved(p in path()) {
                let out = norm(&p);
                let bytes = out.as_bytes();
                for (i, _) in out.match_indices('%') {
                    let high = bytes[i + 1];
                    let low = bytes[i + 2];
                    prop_assert!(!high.is_ascii_lowercase() && !low.is_ascii_lowercase(), "{}", out);
                    prop_assert!(!is_unreserved(hex_value(high) << 4 | hex_value(low)), "{}", out);
                }
            }

            #[test]
            fn arbitrary_strings_never_panic(s in "\\PC*") {
                let _ = normalize_path(&s);
                let _ = normalize_path(&format!("/{s}"));
            }
        }
    }
}
