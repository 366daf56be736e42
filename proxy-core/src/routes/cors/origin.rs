//! CORS origins: the request's `Origin` header, and the `allowOrigins` patterns of a
//! CORS filter (GEP-1767).
//!
//! An origin is `<scheme>://<host>[:<port>]` with scheme `http` or `https`; an absent
//! port is the scheme's (80, 443), so `https://a.example` and `https://a.example:443`
//! are the same origin. Schemes and hosts compare case-insensitively.
//!
//! A pattern is `*` (every origin), or an origin whose host may start with `*`: the
//! star matches one or more characters to its left, any number of DNS labels
//! included, so `https://*.example.com` matches `https://a.example.com` and
//! `https://a.b.example.com` but neither `https://example.com` nor
//! `http://a.example.com` nor `https://a.example.com:8443`. A star anywhere else is
//! invalid.

use std::fmt;

/// The two schemes an origin may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginScheme {
    Http,
    Https,
}

impl OriginScheme {
    fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else if text.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else {
            None
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// A request's origin, normalised (lower-case host, explicit port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: OriginScheme,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses an `Origin` header value. `null` (an opaque origin), other schemes, and
    /// anything with a path, user info, or a bad host or port give `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let (scheme, host, port) = split(value)?;
        let scheme = OriginScheme::parse(scheme)?;
        if !valid_host(host) {
            return None;
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => parse_port(p)?,
        };
        Some(Self { scheme, host: host.to_ascii_lowercase(), port })
    }
}

/// Why an `allowOrigins` entry is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidOrigin {
    pub value: String,
    pub reason: &'static str,
}

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allowOrigins entry {:?}: {}", self.value, self.reason)
    }
}

/// The host part of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*<suffix>`: the host ends with `suffix` and has at least one character before it.
    Suffix(String),
    /// `*` alone: every host.
    Any,
}

/// One `allowOrigins` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern(PatternKind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternKind {
    /// `*`: every origin.
    Any,
    Origin { scheme: OriginScheme, host: HostPattern, port: u16 },
}

impl OriginPattern {
    /// The bare `*` entry (which the spec treats apart when requests carry credentials).
    pub fn is_any(&self) -> bool {
        self.0 == PatternKind::Any
    }

    pub fn parse(value: &str) -> Result<Self, InvalidOrigin> {
        let invalid = |reason| InvalidOrigin { value: value.to_owned(), reason };
        if value == "*" {
            return Ok(Self(PatternKind::Any));
        }
        let (scheme, host, port) = split(value).ok_or_else(|| invalid("not <scheme>://<host>[:<port>]"))?;
        let scheme = OriginScheme::parse(scheme).ok_or_else(|| invalid("the scheme must be http or https"))?;
        let host = match host.strip_prefix('*') {
            Some("") => HostPattern::Any,
            Some(suffix) if valid_host_chars(suffix) => HostPattern::Suffix(suffix.to_ascii_lowercase()),
            Some(_) => return Err(invalid("a wildcard host is `*` or `*` followed by a host suffix")),
            None if valid_host(host) => HostPattern::Exact(host.to_ascii_lowercase()),
            None => return Err(invalid("invalid host")),
        };
        let port = match port {
            None => scheme.default_port(),
            Some(p) => parse_port(p).ok_or_else(|| invalid("the port must be 1 to 65535"))?,
        };
        Ok(Self(PatternKind::Origin { scheme, host, port }))
    }

    /// Whether `origin` is allowed by this entry.
    pub fn matches(&self, origin: &Origin) -> bool {
        match &self.0 {
            PatternKind::Any => true,
            PatternKind::Origin { scheme, host, port } => {
                *scheme == origin.scheme
                    && *port == origin.port
                    && match host {
                        HostPattern::Any => true,
                        HostPattern::Exact(h) => *h == origin.host,
                        HostPattern::Suffix(s) => origin.host.len() > s.len() && origin.host.ends_with(s.as_str()),
                    }
            }
        }
    }
}

/// The normalised form: `*`, or `<scheme>://<host>:<port>` with the port always written.
impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PatternKind::Origin { scheme, host, port } = &self.0 else { return f.write_str("*") };
        let scheme = match scheme {
            OriginScheme::Http => "http",
            OriginScheme::Https => "https",
        };
        let host = match host {
            HostPattern::Any => "*".to_owned(),
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Suffix(s) => format!("*{s}"),
        };
        write!(f, "{scheme}://{host}:{port}")
    }
}

/// Splits `scheme://host[:port]` (no path, query, fragment or user info).
fn split(value: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, authority) = value.split_once("://")?;
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Some((scheme, host, None)),
            _ => Some((scheme, host, Some(rest.strip_prefix(':')?))),
        };
    }
    Some(match authority.rsplit_once(':') {
        Some((host, port)) => (scheme, host, Some(port)),
        None => (scheme, authority, None),
    })
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// A DNS name or IPv4 address (labels of letters, digits, `-` and `_`, no empty
/// label), or a bracketed IPv6 literal.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|ip| !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'));
    }
    !host.is_empty() && valid_host_chars(host) && host.split('.').all(|label| !label.is_empty())
}

/// The characters of a host or host suffix.
fn valid_host_chars(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn origin(s: &str) -> Origin {
        Origin::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    fn pattern(s: &str) -> OriginPattern {
        OriginPattern::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn default_ports_make_the_same_origin() {
        assert_eq!(origin("https://a.example"), origin("https://a.example:443"));
        assert_eq!(origin("http://a.example"), origin("HTTP://A.Example:80"));
        assert_ne!(origin("https://a.example"), origin("http://a.example"));
        assert_ne!(origin("https://a.example"), origin("https://a.example:8443"));
    }

    #[test]
    fn malformed_origins_do_not_parse() {
        for bad in [
            "null",
            "",
            "https://",
            "https://a.example/",
            "https://a.example/path",
            "https://user@a.example",
            "https://a.example:0",
            "https://a.example:65536",
            "https://a.example:",
            "https://a.example:+1",
            "ftp://a.example",
            "https:/a.example",
            "https://a..example",
            "https://.example",
            "https://[zz]",
            "https://[::1",
            "https://a example",
            "https://*.example",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad:?}");
        }
        assert!(Origin::parse("http://[::1]:8080").is_some());
        assert!(Origin::parse("http://10.0.0.1").is_some());
    }

    #[test]
    fn exact_patterns() {
        let p = pattern("https://www.foo.com");
        assert!(p.matches(&origin("https://www.foo.com")));
        assert!(p.matches(&origin("https://WWW.FOO.COM:443")));
        assert!(!p.matches(&origin("http://www.foo.com")));
        assert!(!p.matches(&origin("https://www.foo.com:8443")));
        assert!(!p.matches(&origin("https://foo.com")));
        assert!(pattern("http://a.example:8080").matches(&origin("http://a.example:8080")));
    }

    /// The wildcard cases of upstream's HTTPRouteCORS test and the GEP's text.
    #[test]
    fn wildcard_hosts_match_any_labels_to_the_left() {
        let p = pattern("https://*.bar.com");
        assert!(p.matches(&origin("https://www.bar.com")));
        assert!(p.matches(&origin("https://xpto.www.bar.com")));
        assert!(!p.matches(&origin("https://bar.com")));
        assert!(!p.matches(&origin("https://www.bar.com.evil")));
        assert!(!p.matches(&origin("https://wwwbar.com")));
        assert!(!p.matches(&origin("http://www.bar.com")));
        assert!(!p.matches(&origin("https://www.bar.com:8443")));
        let any_host = pattern("https://*");
        assert!(any_host.matches(&origin("https://anything.example")));
        assert!(!any_host.matches(&origin("http://anything.example")));
        let any = pattern("*");
        assert!(any.matches(&origin("https://foobar.com:12345")));
        assert!(any.matches(&origin("http://foobar.com")));
    }

    #[test]
    fn patterns_display_normalised() {
        assert_eq!(pattern("*").to_string(), "*");
        assert_eq!(pattern("HTTPS://*.Bar.com").to_string(), "https://*.bar.com:443");
        assert_eq!(pattern("http://a.example:8080").to_string(), "http://a.example:8080");
        assert_eq!(pattern("http://*").to_string(), "http://*:80");
    }

    #[test]
    fn invalid_patterns_say_why() {
        for bad in ["", "foo.com", "ftp://foo.com", "https://foo.*.com", "https://**.foo", "https://foo.com/", "https://foo.com:99999", "https://*.foo.com:x"] {
            let error = OriginPattern::parse(bad).unwrap_err();
            assert!(error.to_string().contains("allowOrigins entry"), "{error}");
        }
    }

    proptest! {
        /// Arbitrary `Origin` values never panic, and whatever parses round-trips
        /// through an exact pattern of itself.
        #[test]
        fn arbitrary_origins_never_panic(value in ".{0,80}") {
            if let Some(o) = Origin::parse(&value) {
                prop_assert!(pattern("*").matches(&o));
            }
            let _ = OriginPattern::parse(&value);
        }
    }
}
