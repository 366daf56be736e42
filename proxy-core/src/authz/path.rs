//! Request paths as authorization sees them: normalised before matching, so that one
//! resource has one spelling and `/api/../admin` cannot pass for `/api`.
//!
//! The rules follow Istio's `normalizePath: BASE` plus `MERGE_SLASHES` (RFC 3986
//! section 6 normalisation and dot-segment removal, then merged slashes), but fail
//! closed where Envoy would rewrite:
//! * `%XX` escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; other
//!   escapes stay encoded, with upper-case hex digits; a malformed escape is rejected;
//! * an encoded `/` (`%2F`) or `\` (`%5C`), an encoded NUL (`%00`) and a raw `\` are
//!   rejected (Istio's default keeps encoded slashes; rewriting them would let
//!   `/api%2F..%2Fadmin` be read differently by the pod);
//! * repeated slashes are merged (`//api` is `/api`);
//! * `.` segments are removed and `..` removes the segment before it; a `..` above the
//!   root is rejected (RFC 3986 would clamp it at the root);
//! * a path that is not absolute (`*`, or empty) is rejected;
//! * a trailing slash stays (`/api/` is not `/api`).

/// Why a path cannot be authorized (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    #[error("the path is not absolute")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEscape,
    #[error("an encoded '/' or '\\'")]
    EncodedSeparator,
    #[error("an encoded NUL")]
    Nul,
    #[error("a backslash")]
    Backslash,
    #[error("a '..' segment above the root")]
    AboveRoot,
}

/// The normalised form of `path` (without its query), or why it is refused.
pub fn normalize(path: &str) -> Result<String, PathRejection> {
    if !path.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    let decoded = decode_unreserved(path)?;
    resolve_segments(&decoded)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// Decodes escaped unreserved characters, upper-cases the other escapes, and refuses
/// the escapes and bytes that could change the path's structure.
fn decode_unreserved(path: &str) -> Result<String, PathRejection> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathRejection::Backslash),
            0 => return Err(PathRejection::Nul),
            b'%' => {
                let (Some(high), Some(low)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) else {
                    return Err(PathRejection::BadEscape);
                };
                let value = high << 4 | low;
                match value {
                    b'/' | b'\\' => return Err(PathRejection::EncodedSeparator),
                    0 => return Err(PathRejection::Nul),
                    v if is_unreserved(v) => out.push(v),
                    v => out.extend_from_slice(format!("%{v:02X}").as_bytes()),
                }
                i += 3;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    // Only ASCII was inserted into a copy of valid UTF-8.
    String::from_utf8(out).map_err(|_| PathRejection::BadEscape)
}

/// Merges slashes and resolves dot segments of an absolute path.
fn resolve_segments(path: &str) -> Result<String, PathRejection> {
    let parts: Vec<&str> = path[1..].split('/').collect();
    let trailing = matches!(parts.last(), Some(&"" | &"." | &".."));
    let mut segments: Vec<&str> = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(PathRejection::AboveRoot)?;
            }
            segment => segments.push(segment),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing || segments.is_empty() {
        normalized.push('/');
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> String {
        normalize(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn plain_paths_stay() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/api"), "/api");
        assert_eq!(ok("/api/"), "/api/");
        assert_eq!(ok("/api/v1/items"), "/api/v1/items");
    }

    #[test]
    fn dot_segments_resolve() {
        assert_eq!(ok("/api/../admin"), "/admin");
        assert_eq!(ok("/api/./v1"), "/api/v1");
        assert_eq!(ok("/api/v1/.."), "/api/");
        assert_eq!(ok("/api/."), "/api/");
        assert_eq!(ok("/a/b/../../c"), "/c");
        assert_eq!(ok("/."), "/");
    }

    #[test]
    fn slashes_merge() {
        assert_eq!(ok("//api"), "/api");
        assert_eq!(ok("/api//v1///x"), "/api/v1/x");
        assert_eq!(ok("//"), "/");
    }

    #[test]
    fn unreserved_escapes_decode_before_dots_resolve() {
        assert_eq!(ok("/%61pi"), "/api");
        assert_eq!(ok("/api/%2e%2e/admin"), "/admin");
        assert_eq!(ok("/api/%2E%2E/admin"), "/admin");
        assert_eq!(ok("/api/%2e/x"), "/api/x");
        assert_eq!(ok("/a%7eb"), "/a~b");
    }

    #[test]
    fn other_escapes_stay_encoded_upper_case() {
        assert_eq!(ok("/a%20b"), "/a%20b");
        assert_eq!(ok("/a%3fb"), "/a%3Fb");
        assert_eq!(ok("/%c3%a9"), "/%C3%A9");
    }

    #[test]
    fn structural_escapes_and_bad_input_are_refused() {
        assert_eq!(normalize("/api%2Fadmin"), Err(PathRejection::EncodedSeparator));
        assert_eq!(normalize("/api%2f..%2fadmin"), Err(PathRejection::EncodedSeparator));
        assert_eq!(normalize("/api%5cadmin"), Err(PathRejection::EncodedSeparator));
        assert_eq!(normalize("/api\\admin"), Err(PathRejection::Backslash));
        assert_eq!(normalize("/a%00"), Err(PathRejection::Nul));
        assert_eq!(normalize("/a%zz"), Err(PathRejection::BadEscape));
        assert_eq!(normalize("/a%2"), Err(PathRejection::BadEscape));
        assert_eq!(normalize("/a%"), Err(PathRejection::BadEscape));
        assert_eq!(normalize("*"), Err(PathRejection::NotAbsolute));
        assert_eq!(normalize(""), Err(PathRejection::NotAbsolute));
    }

    #[test]
    fn escaping_the_root_is_refused() {
        assert_eq!(normalize("/.."), Err(PathRejection::AboveRoot));
        assert_eq!(normalize("/api/../../etc"), Err(PathRejection::AboveRoot));
        assert_eq!(normalize("/%2e%2e/x"), Err(PathRejection::AboveRoot));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_is_idempotent(path in "/[a-z/.%0-9A-F]{0,24}") {
            if let Ok(once) = normalize(&path) {
                proptest::prop_assert_eq!(normalize(&once), Ok(once.clone()));
                proptest::prop_assert!(!once.contains("//"));
                proptest::prop_assert!(!once.split('/').any(|s| s == "." || s == ".."));
            }
        }
    }
}
