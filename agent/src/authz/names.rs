//! Checking the names and values a policy holds: name patterns (`*` at one end),
//! SPIFFE IDs, HTTP methods and paths. Each check returns a message for the status.

use ambit_proxy_core::authz::NamePattern;
use ambit_proxy_core::authz::normalize;

/// The methods a rule may name (RFC 9110 and PATCH).
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// `*` (anything), `prefix*`, `*suffix` or an exact value; at most one `*`, at one end.
pub fn pattern(value: &str) -> Result<NamePattern, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value == "*" {
        return Ok(NamePattern::Any);
    }
    let stars = value.matches('*').count();
    if stars == 1 {
        if let Some(prefix) = value.strip_suffix('*') {
            return Ok(NamePattern::Prefix(prefix.to_string()));
        }
        if let Some(suffix) = value.strip_prefix('*') {
            return Ok(NamePattern::Suffix(suffix.to_string()));
        }
    }
    if stars > 0 {
        return Err(format!("{value:?}: a `*` is allowed only alone or at one end"));
    }
    Ok(NamePattern::Exact(value.to_string()))
}

/// A namespace or service-account name (or pattern): lower-case alphanumerics, `-` and
/// `.` around the optional `*`.
pub fn kube_name_pattern(value: &str) -> Result<NamePattern, String> {
    let valid = |s: &str| s.len() <= 253 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'*'));
    if !valid(value) {
        return Err(format!("{value:?} is not a valid name (lower-case letters, digits, `-` and `.`)"));
    }
    pattern(value)
}

/// A SPIFFE ID (`spiffe://<trust-domain>/<path>`), exact or with a `*` at one end.
pub fn spiffe_pattern(value: &str) -> Result<NamePattern, String> {
    let compiled = pattern(value)?;
    let bad = |why: &str| Err(format!("{value:?} is not a SPIFFE ID: {why}"));
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it holds white space");
    }
    match &compiled {
        NamePattern::Any | NamePattern::Suffix(_) => Ok(compiled),
        NamePattern::Prefix(prefix) => match prefix.strip_prefix("spiffe://") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(compiled),
            _ => bad("it must start with spiffe://<trust-domain>"),
        },
        NamePattern::Exact(exact) => {
            let Some(rest) = exact.strip_prefix("spiffe://") else { return bad("it must start with spiffe://") };
            let Some((domain, path)) = rest.split_once('/') else { return bad("it has no path") };
            if ambit_proxy_core::identity::TrustDomain::new(domain).is_err() {
                return bad("invalid trust domain");
            }
            if path.is_empty() || path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
                return bad("its path must have non-empty segments, none `.` or `..`");
            }
            Ok(compiled)
        }
    }
}

/// An upper-case HTTP method from the standard set.
pub fn method(value: &str) -> Result<String, String> {
    if METHODS.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(format!("unknown method {value:?} (expected one of {})", METHODS.join(", ")))
    }
}

/// An absolute path that is already normal: no `.`/`..` segments, no `//`, no
/// `%`-encodings, no `\`, no query or fragment (requests are matched after normalisation,
/// so a non-normal value could never match as written).
pub fn path(value: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("path {value:?} {why}"));
    if !value.starts_with('/') {
        return bad("must start with `/`");
    }
    if value.contains(['?', '#']) {
        return bad("must not hold a query or fragment (`?`, `#`)");
    }
    if value.contains('%') {
        return bad("must not hold %-encodings (write the decoded character)");
    }
    if value.contains('\\') || value.bytes().any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80) {
        return bad("holds characters not allowed in a path");
    }
    // The normalisation the data plane applies to requests before matching.
    match normalize(value) {
        Ok(normal) if normal == value => Ok(value.to_string()),
        Ok(normal) => bad(&format!("is not normalised (`//`, `.` or `..`): write {normal:?}")),
        Err(e) => bad(&format!("is invalid: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_take_one_star_at_one_end() {
        assert_eq!(pattern("*"), Ok(NamePattern::Any));
        assert_eq!(pattern("web*"), Ok(NamePattern::Prefix("web".into())));
        assert_eq!(pattern("*-ops"), Ok(NamePattern::Suffix("-ops".into())));
        assert_eq!(pattern("web"), Ok(NamePattern::Exact("web".into())));
        assert!(pattern("w*b").is_err());
        assert!(pattern("*web*").is_err());
        assert!(pattern("").is_err());
        assert!(kube_name_pattern("Web").is_err());
    }

    #[test]
    fn spiffe_ids_are_checked() {
        assert!(spiffe_pattern("spiffe://cluster.local/ns/web/sa/frontend").is_ok());
        assert!(spiffe_pattern("spiffe://cluster.local/ns/web/*").is_ok());
        assert!(spiffe_pattern("*/sa/frontend").is_ok());
        for bad in ["http://x/y", "spiffe://cluster.local", "spiffe://Bad Domain/x", "spiffe:///x", "spiffe://a/b//c", "spiffe://*"] {
            assert!(spiffe_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_must_be_normal() {
        assert_eq!(path("/api/v1"), Ok("/api/v1".into()));
        assert_eq!(path("/"), Ok("/".into()));
        for bad in ["api", "/a/../b", "/a/./b", "/a//b", "/a%2Fb", "/a?x=1", "/a#f", "/a\\b", "/.."] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_are_upper_case_and_known() {
        assert_eq!(method("GET"), Ok("GET".into()));
        assert!(method("get").is_err());
        assert!(method("FETCH").is_err());
    }
}
