//! Request matching: path, method, headers and query parameters (HTTPRoute), and the
//! GRPCRoute service/method matches expressed on the `/service/method` path.

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

/// The parts of a request that matching looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Path without the query string.
    pub path: &'a str,
    /// Raw query string (without `?`), if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        Self { method: &parts.method, path: parts.uri.path(), query: parts.uri.query(), headers: &parts.headers }
    }
}

/// A string match (Exact or RegularExpression); regexes are anchored (whole value).
#[derive(Debug, Clone)]
pub enum StringMatch {
    Exact(String),
    /// Anchored: matches only if the whole value matches.
    Regex(Regex),
}

/// A path match (HTTPPathMatch).
///
/// Paths are compared as they appear in the request target (no percent-decoding or
/// dot-segment normalisation), case-sensitively.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Segment-aware prefix: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
    /// A trailing `/` in the configured value is ignored (except for `/` itself).
    Prefix(String),
    /// Anchored regular expression on the path.
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: StringMatch,
}

#[derive(Debug, Clone)]
pub struct QueryMatch {
    /// Query parameter names are case-sensitive.
    pub name: String,
    pub value: StringMatch,
}

/// One `HTTPRouteMatch` (or GRPCRouteMatch, translated): all conditions must hold.
///
/// When several header (or query) matches name the same header (parameter), only the
/// first one counts, as the spec requires; later ones are ignored for matching and
/// for precedence.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    /// None means "any path" (the spec default `PathPrefix /` for HTTPRoute).
    pub path: Option<PathMatch>,
    pub method: Option<Method>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

/// Wraps a pattern so that it must match the whole input.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// The pattern a regex was built from, without the anchoring added by [`anchored`].
pub(crate) fn unanchored(regex: &Regex) -> &str {
    let s = regex.as_str();
    s.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(s)
}

impl StringMatch {
    /// Compiles an anchored regular expression. Errors carry the regex error text.
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        anchored(pattern).map(StringMatch::Regex)
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(expected) => expected == value,
            StringMatch::Regex(re) => re.is_match(value),
        }
    }
}

impl PathMatch {
    /// Compiles an anchored regular expression on the path.
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        anchored(pattern).map(PathMatch::Regex)
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(expected) => expected == path,
            PathMatch::Prefix(prefix) => prefix_matches(prefix_core(prefix), path),
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

/// A PathPrefix value with its trailing `/` removed (`/` itself becomes ``, which
/// matches every path). This is the part of the path that `ReplacePrefixMatch` replaces.
pub(crate) fn prefix_core(prefix: &str) -> &str {
    prefix.trim_end_matches('/')
}

/// Element-wise prefix test: `core` must be followed by the end of the path or a `/`.
fn prefix_matches(core: &str, path: &str) -> bool {
    match path.strip_prefix(core) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl RouteMatch {
    /// A match with no conditions: every request (the spec default `PathPrefix /`).
    pub fn catch_all() -> Self {
        Self::default()
    }

    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        if self.path.as_ref().is_some_and(|path| !path.matches(request.path)) {
            return false;
        }
        if self.method.as_ref().is_some_and(|method| method != request.method) {
            return false;
        }
        self.effective_headers().all(|h| header_matches(h, request.headers))
            && self.effective_query().all(|q| query_matches(q, request.query))
    }

    /// The header matches that count: the first one per (case-insensitive) name.
    pub fn effective_headers(&self) -> impl Iterator<Item = &HeaderMatch> {
        self.headers
            .iter()
            .enumerate()
            .filter(|(i, h)| !self.headers[..*i].iter().any(|earlier| earlier.name == h.name))
            .map(|(_, h)| h)
    }

    /// The query parameter matches that count: the first one per (case-sensitive) name.
    pub fn effective_query(&self) -> impl Iterator<Item = &QueryMatch> {
        self.query
            .iter()
            .enumerate()
            .filter(|(i, q)| !self.query[..*i].iter().any(|earlier| earlier.name == q.name))
            .map(|(_, q)| q)
    }
}

/// A header is matched on its combined value: repeated header lines are joined with
/// `,` in order, as RFC 7230 section 3.2.2 describes (which the spec defers to).
/// `Set-Cookie` cannot be combined that way, so there any single value may match.
fn header_matches(m: &HeaderMatch, headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(&m.name).iter().peekable();
    if values.peek().is_none() {
        return false;
    }
    if m.name == http::header::SET_COOKIE {
        return values.any(|v| m.value.matches(&String::from_utf8_lossy(v.as_bytes())));
    }
    let joined: Vec<_> = values.map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
    m.value.matches(&joined.join(","))
}

/// A query parameter is matched on the (percent-decoded) value of its first
/// occurrence, as the spec recommends. Names are compared case-sensitively after
/// percent-decoding; a parameter without `=` has the empty value.
fn query_matches(m: &QueryMatch, query: Option<&str>) -> bool {
    match query_param(query, &m.name) {
        Some(value) => m.value.matches(&value),
        None => false,
    }
}

/// The percent-decoded value of the first occurrence of `name` in a raw query string.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are, invalid UTF-8 is
/// replaced. `+` is left alone (it is not a space outside form encoding).
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Translates a GRPCMethodMatch into a match on the request path `/service/method`.
///
/// * both set, `Exact`: `Exact /service/method`;
/// * otherwise a regex `/(?:S)/(?:M)`, where an unset part is `[^/]+` (any one path
///   element) and a set part is the escaped literal (`Exact`) or the given pattern
///   (`RegularExpression`). Service only therefore means "any method of this service",
///   method only "this method of any service", neither "any gRPC call".
///
/// Empty strings count as unset, as the spec says.
pub fn grpc_method_match(
    service: Option<&str>,
    method: Option<&str>,
    regex: bool,
) -> Result<PathMatch, regex::Error> {
    let service = service.filter(|s| !s.is_empty());
    let method = method.filter(|m| !m.is_empty());
    if let (false, Some(s), Some(m)) = (regex, service, method) {
        return Ok(PathMatch::Exact(format!("/{s}/{m}")));
    }
    let part = |value: Option<&str>| match value {
        None => GRPC_WILDCARD.to_owned(),
        Some(v) if regex => v.to_owned(),
        Some(v) => regex::escape(v),
    };
    PathMatch::regex(&format!("/(?:{})/(?:{})", part(service), part(method)))
}

/// What an unset service or method becomes in a translated gRPC match.
const GRPC_WILDCARD: &str = "[^/]+";

/// Characters in the matching service and method of a (translated) gRPC path match,
/// for GRPCRoute precedence. For a regex part this counts the pattern's characters
/// without escaping backslashes; a wildcard part counts 0.
pub(crate) fn grpc_specificity(path: Option<&PathMatch>) -> (usize, usize) {
    fn count(part: &str) -> usize {
        if part == GRPC_WILDCARD { 0 } else { part.chars().filter(|c| *c != '\\').count() }
    }
    match path {
        None => (0, 0),
        Some(PathMatch::Exact(p)) => {
            let p = p.strip_prefix('/').unwrap_or(p);
            match p.split_once('/') {
                Some((s, m)) => (s.chars().count(), m.chars().count()),
                None => (p.chars().count(), 0),
            }
        }
        Some(PathMatch::Prefix(p)) => (prefix_core(p).trim_start_matches('/').chars().count(), 0),
        Some(PathMatch::Regex(re)) => {
            let inner = unanchored(re);
            let parts = inner
                .strip_prefix("/(?:")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.split_once(")/(?:"));
            match parts {
                Some((s, m)) => (count(s), count(m)),
                None => (count(inner), 0),
            }
        }
    }
}
