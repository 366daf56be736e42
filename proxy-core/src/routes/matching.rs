//! Request matching: path, method, headers and query parameters (HTTPRoute), and the
//! GRPCRoute service/method matches expressed on the `/service/method` path.

use std::borrow::Cow;

use http::header::AsHeaderName;
use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

use super::pattern::{compile_anchored, PatternError, RegexBudget};

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
/// Paths are compared case-sensitively with the request path after the proxy has
/// normalised it ([`normalize_path`](super::normalize_path): dot segments removed,
/// repeated slashes merged, unreserved escapes decoded, other escapes upper-cased).
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

/// The pattern a regex was built from, without the anchoring added by [`compile_anchored`].
pub(crate) fn unanchored(regex: &Regex) -> &str {
    let s = regex.as_str();
    s.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(s)
}

impl StringMatch {
    /// Compiles an anchored regular expression (per-pattern limits only). Errors carry
    /// the regex error text.
    pub fn regex(pattern: &str) -> Result<Self, PatternError> {
        Self::regex_within(pattern, &RegexBudget::unlimited())
    }

    /// [`StringMatch::regex`], charging the configuration's `budget`.
    pub fn regex_within(pattern: &str, budget: &RegexBudget) -> Result<Self, PatternError> {
        compile_anchored(pattern, budget).map(StringMatch::Regex)
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(expected) => expected == value,
            StringMatch::Regex(re) => re.is_match(value),
        }
    }
}

impl PathMatch {
    /// Compiles an anchored regular expression on the path (per-pattern limits only).
    pub fn regex(pattern: &str) -> Result<Self, PatternError> {
        Self::regex_within(pattern, &RegexBudget::unlimited())
    }

    /// [`PathMatch::regex`], charging the configuration's `budget`.
    pub fn regex_within(pattern: &str, budget: &RegexBudget) -> Result<Self, PatternError> {
        compile_anchored(pattern, budget).map(PathMatch::Regex)
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
pub(super) fn prefix_matches(core: &str, path: &str) -> bool {
    prefix_matches_bytes(core.as_bytes(), path.as_bytes())
}

/// [`prefix_matches`] on the bytes of both.
pub(super) fn prefix_matches_bytes(core: &[u8], path: &[u8]) -> bool {
    match path.strip_prefix(core) {
        Some(rest) => rest.is_empty() || rest.first() == Some(&b'/'),
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
        unique_by(&self.headers, |a, b| a.name == b.name)
    }

    /// The query parameter matches that count: the first one per (case-sensitive) name.
    pub fn effective_query(&self) -> impl Iterator<Item = &QueryMatch> {
        unique_by(&self.query, |a, b| a.name == b.name)
    }
}

/// The items of `items` that no earlier item is `same` as.
pub(super) fn unique_by<T>(items: &[T], same: impl Fn(&T, &T) -> bool) -> impl Iterator<Item = &T> {
    items.iter().enumerate().filter(move |(i, x)| !items[..*i].iter().any(|earlier| same(earlier, x))).map(|(_, x)| x)
}

/// A header is matched on its combined value: repeated header lines are joined with
/// `,` in order, as RFC 7230 section 3.2.2 describes (which the spec defers to).
/// `Set-Cookie` cannot be combined that way, so there any single value may match.
fn header_matches(m: &HeaderMatch, headers: &HeaderMap) -> bool {
    header_value_matches(headers, &m.name, m.name == http::header::SET_COOKIE, |value| m.value.matches(value))
}

/// [`header_matches`] for any way of naming the header (`set_cookie`: it names
/// `Set-Cookie`) and any test of its value.
pub(super) fn header_value_matches<K: AsHeaderName>(
    headers: &HeaderMap,
    name: K,
    set_cookie: bool,
    test: impl Fn(&str) -> bool,
) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return false };
    if set_cookie {
        return std::iter::once(first).chain(values).any(|v| test(&String::from_utf8_lossy(v.as_bytes())));
    }
    match values.next() {
        // The common case: one header line, matched without allocating.
        None => test(&String::from_utf8_lossy(first.as_bytes())),
        Some(second) => {
            let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
            for v in std::iter::once(second).chain(values) {
                joined.push(',');
                joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            test(&joined)
        }
    }
}

/// A query parameter is matched on the (percent-decoded) value of its first
/// occurrence, as the spec recommends. Names are compared case-sensitively after
/// percent-decoding; a parameter without `=` has the empty value.
fn query_matches(m: &QueryMatch, query: Option<&str>) -> bool {
    match query_param_value(query, &m.name) {
        Some(value) => m.value.matches(&value),
        None => false,
    }
}

/// The percent-decoded value of the first occurrence of `name` in a raw query string.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query_param_value(query, name).map(Cow::into_owned)
}

/// [`query_param`] without allocating when nothing needs decoding.
pub(super) fn query_param_value<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    query?
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are, invalid UTF-8 is
/// replaced. `+` is left alone (it is not a space outside form encoding).
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
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
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
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
/// Regex parts are each checked on their own first, so that one cannot close the
/// group around it; the whole path regex charges `budget`.
pub fn grpc_method_match(
    service: Option<&str>,
    method: Option<&str>,
    regex: bool,
    budget: &RegexBudget,
) -> Result<PathMatch, PatternError> {
    let service = service.filter(|s| !s.is_empty());
    let method = method.filter(|m| !m.is_empty());
    if let (false, Some(s), Some(m)) = (regex, service, method) {
        return Ok(PathMatch::Exact(format!("/{s}/{m}")));
    }
    let part = |value: Option<&str>| match value {
        None => Ok(GRPC_WILDCARD.to_owned()),
        Some(v) if regex => compile_anchored(v, &RegexBudget::unlimited()).map(|_| v.to_owned()),
        Some(v) => Ok(regex::escape(v)),
    };
    PathMatch::regex_within(&format!("/(?:{})/(?:{})", part(service)?, part(method)?), budget)
}

/// What an unset service or method becomes in a translated gRPC match.
const GRPC_WILDCARD: &str = "[^/]+";

/// Characters in the matching service and method of a (translated) gRPC path match,
/// for GRPCRoute precedence. For a regex part this counts the pattern's characters
/// without escaping backslashes; a wildcard part counts 0.
pub(crate) fn grpc_specificity(path: Option<&PathMatch>) -> (usize, usize) {
    fn count(part: &str) -> usize {
        if part == GRPC_WILDCARD {
            0
        } else {
            part.chars().filter(|c| *c != '\\').count()
        }
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
            let parts =
                inner.strip_prefix("/(?:").and_then(|r| r.strip_suffix(')')).and_then(|r| r.split_once(")/(?:"));
            match parts {
                Some((s, m)) => (count(s), count(m)),
                None => (count(inner), 0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn request<'a>(
        method: &'a Method,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
    ) -> RequestView<'a> {
        RequestView { method, path, query, headers }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    fn exact(v: &str) -> StringMatch {
        StringMatch::Exact(v.to_owned())
    }

    #[test]
    fn regexes_are_anchored() {
        let m = StringMatch::regex("v[0-9]").unwrap();
        assert!(m.matches("v1"));
        assert!(!m.matches("v12"));
        assert!(!m.matches("xv1"));
        // Alternation must not escape the anchors.
        let m = StringMatch::regex("a|b").unwrap();
        assert!(m.matches("a") && m.matches("b"));
        assert!(!m.matches("ab") && !m.matches("xa") && !m.matches("bx"));
        let p = PathMatch::regex("/api/.*|/v2").unwrap();
        assert!(p.matches("/api/x") && p.matches("/v2"));
        assert!(!p.matches("/v2/x") && !p.matches("/x/api/y"));
    }

    #[test]
    fn bad_regex_is_an_error() {
        let err = StringMatch::regex("(").unwrap_err();
        assert!(err.to_string().contains("unclosed"), "{err}");
        assert!(PathMatch::regex("[").is_err());
    }

    #[test]
    fn a_pattern_cannot_escape_the_anchors() {
        assert!(StringMatch::regex("a)|(?:.*").is_err());
        assert!(PathMatch::regex("/a)|(?:.*").is_err());
        // Nor the group around a gRPC service or method part.
        let budget = crate::routes::RegexBudget::unlimited();
        assert!(grpc_method_match(Some("a)|(?:.*"), None, true, &budget).is_err());
        assert!(grpc_method_match(Some("a.B"), Some(".*)/(?:.*"), true, &budget).is_err());
    }

    #[test]
    fn exact_string_match_is_case_sensitive() {
        assert!(exact("One").matches("One"));
        assert!(!exact("One").matches("one"));
        assert!(!exact("One").matches("One "));
    }

    #[test]
    fn exact_path() {
        let p = PathMatch::Exact("/abc".into());
        assert!(p.matches("/abc"));
        for other in ["/abc/", "/Abc", "/abcd", "/ab", "/"] {
            assert!(!p.matches(other), "{other}");
        }
    }

    #[test]
    fn prefix_path_is_element_wise() {
        let p = PathMatch::Prefix("/abc".into());
        for ok in ["/abc", "/abc/", "/abc/def", "/abc/def/"] {
            assert!(p.matches(ok), "{ok}");
        }
        for no in ["/abcd", "/ab", "/", "/Abc", "/x/abc"] {
            assert!(!p.matches(no), "{no}");
        }
    }

    #[test]
    fn prefix_trailing_slash_is_ignored() {
        let p = PathMatch::Prefix("/abc/".into());
        for ok in ["/abc", "/abc/", "/abc/def"] {
            assert!(p.matches(ok), "{ok}");
        }
        assert!(!p.matches("/abcd"));
    }

    #[test]
    fn root_prefix_matches_everything() {
        let p = PathMatch::Prefix("/".into());
        for ok in ["/", "/a", "/a/b/", "//"] {
            assert!(p.matches(ok), "{ok}");
        }
    }

    #[test]
    fn header_names_are_case_insensitive_values_exact() {
        let m = RouteMatch {
            headers: vec![HeaderMatch { name: HeaderName::from_static("version"), value: exact("one") }],
            ..Default::default()
        };
        let get = Method::GET;
        let h = headers(&[("version", "one")]);
        assert!(m.matches(&request(&get, "/", None, &h)));
        // HeaderMap normalises names; a header sent as "Version" is the same header.
        let mut h2 = HeaderMap::new();
        h2.insert(HeaderName::from_bytes(b"Version").unwrap(), HeaderValue::from_static("one"));
        assert!(m.matches(&request(&get, "/", None, &h2)));
        let h3 = headers(&[("version", "One")]);
        assert!(!m.matches(&request(&get, "/", None, &h3)));
        let none = HeaderMap::new();
        assert!(!m.matches(&request(&get, "/", None, &none)));
    }

    #[test]
    fn repeated_header_is_matched_on_the_comma_joined_value() {
        let get = Method::GET;
        let h = headers(&[("x-v", "a"), ("x-v", "b")]);
        let joined = RouteMatch {
            headers: vec![HeaderMatch { name: HeaderName::from_static("x-v"), value: exact("a,b") }],
            ..Default::default()
        };
        assert!(joined.matches(&request(&get, "/", None, &h)));
        let first = RouteMatch {
            headers: vec![HeaderMatch { name: HeaderName::from_static("x-v"), value: exact("a") }],
            ..Default::default()
        };
        assert!(!first.matches(&request(&get, "/", None, &h)));
        let re = RouteMatch {
            headers: vec![HeaderMatch {
                name: HeaderName::from_static("x-v"),
                value: StringMatch::regex("a,.*").unwrap(),
            }],
            ..Default::default()
        };
        assert!(re.matches(&request(&get, "/", None, &h)));
    }

    #[test]
    fn only_the_first_match_entry_per_header_name_counts() {
        let m = RouteMatch {
            headers: vec![
                HeaderMatch { name: HeaderName::from_static("x-v"), value: exact("a") },
                HeaderMatch { name: HeaderName::from_static("x-v"), value: exact("b") },
            ],
            query: vec![
                QueryMatch { name: "q".into(), value: exact("1") },
                QueryMatch { name: "q".into(), value: exact("2") },
                QueryMatch { name: "Q".into(), value: exact("3") },
            ],
            ..Default::default()
        };
        let get = Method::GET;
        let h = headers(&[("x-v", "a")]);
        assert!(m.matches(&request(&get, "/", Some("q=1&Q=3"), &h)));
        assert!(!m.matches(&request(&get, "/", Some("q=1"), &h)), "Q is a different (case-sensitive) name");
        assert_eq!(m.effective_headers().count(), 1);
        assert_eq!(m.effective_query().count(), 2);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("animal=whale&otherparam=irrelevant"), "animal").as_deref(), Some("whale"));
        assert_eq!(query_param(Some("animal=whale"), "Animal"), None, "names are case-sensitive");
        assert_eq!(query_param(Some("a=1&a=2"), "a").as_deref(), Some("1"), "first value wins");
        assert_eq!(query_param(Some("flag&b=2"), "flag").as_deref(), Some(""));
        assert_eq!(query_param(Some("x=a%20b&y%5B%5D=1"), "x").as_deref(), Some("a b"));
        assert_eq!(query_param(Some("x=a%20b&y%5B%5D=1"), "y[]").as_deref(), Some("1"));
        assert_eq!(query_param(Some("x=100%"), "x").as_deref(), Some("100%"), "bad escape kept");
        assert_eq!(query_param(Some("x=a+b"), "x").as_deref(), Some("a+b"));
        assert_eq!(query_param(Some("x=1=2"), "x").as_deref(), Some("1=2"));
        assert_eq!(query_param(Some(""), "x"), None);
        assert_eq!(query_param(None, "x"), None);
    }

    #[test]
    fn method_and_all_conditions_are_anded() {
        let m = RouteMatch {
            path: Some(PathMatch::Prefix("/api".into())),
            method: Some(Method::POST),
            headers: vec![HeaderMatch { name: HeaderName::from_static("x-v"), value: exact("1") }],
            query: vec![QueryMatch { name: "q".into(), value: exact("y") }],
        };
        let (post, get) = (Method::POST, Method::GET);
        let h = headers(&[("x-v", "1")]);
        let empty = HeaderMap::new();
        assert!(m.matches(&request(&post, "/api/x", Some("q=y"), &h)));
        assert!(!m.matches(&request(&get, "/api/x", Some("q=y"), &h)));
        assert!(!m.matches(&request(&post, "/apix", Some("q=y"), &h)));
        assert!(!m.matches(&request(&post, "/api/x", Some("q=n"), &h)));
        assert!(!m.matches(&request(&post, "/api/x", None, &h)));
        assert!(!m.matches(&request(&post, "/api/x", Some("q=y"), &empty)));
    }

    #[test]
    fn match_without_conditions_matches_everything() {
        let h = HeaderMap::new();
        for path in ["/", "/a/b", "/x?y"] {
            assert!(RouteMatch::catch_all().matches(&request(&Method::DELETE, path, Some("a=b"), &h)));
        }
    }

    #[test]
    fn grpc_both_exact_is_an_exact_path() {
        let p = grpc_method_match(Some("echo.Echo"), Some("Call"), false, &crate::routes::RegexBudget::unlimited()).unwrap();
        assert!(matches!(&p, PathMatch::Exact(v) if v == "/echo.Echo/Call"));
        assert_eq!(grpc_specificity(Some(&p)), (9, 4));
    }

    #[test]
    fn grpc_service_only() {
        let p = grpc_method_match(Some("a.B"), None, false, &crate::routes::RegexBudget::unlimited()).unwrap();
        assert!(p.matches("/a.B/Call") && p.matches("/a.B/Other"));
        assert!(!p.matches("/aXB/Call"), "the dot is literal");
        assert!(!p.matches("/a.B/") && !p.matches("/a.B") && !p.matches("/a.Bc/Call") && !p.matches("/a.B/x/y"));
        assert_eq!(grpc_specificity(Some(&p)), (3, 0));
        // An empty method is unset too.
        let p2 = grpc_method_match(Some("a.B"), Some(""), false, &crate::routes::RegexBudget::unlimited()).unwrap();
        assert!(p2.matches("/a.B/Call"));
    }

    #[test]
    fn grpc_method_only() {
        let p = grpc_method_match(None, Some("Call"), false, &crate::routes::RegexBudget::unlimited()).unwrap();
        assert!(p.matches("/a.B/Call") && p.matches("/x/Call"));
        assert!(!p.matches("/a.B/Calls") && !p.matches("//Call") && !p.matches("/a/b/Call"));
        assert_eq!(grpc_specificity(Some(&p)), (0, 4));
    }

    #[test]
    fn grpc_regex() {
        let p = grpc_method_match(Some(r"foo\..*"), Some("Get|List"), true, &crate::routes::RegexBudget::unlimited()).unwrap();
        assert!(p.matches("/foo.Bar/Get") && p.matches("/foo.Baz/List"));
        assert!(!p.matches("/foo.Bar/Put") && !p.matches("/fooXBar/Get"));
        assert_eq!(grpc_specificity(Some(&p)), (6, 8), "backslashes are not counted");
        let both = grpc_method_match(Some("a.B"), Some("C"), true, &crate::routes::RegexBudget::unlimited()).unwrap();
        assert!(both.matches("/a.B/C") && both.matches("/aXB/C"), "regex type: the dot is a regex dot");
        assert!(grpc_method_match(Some("("), None, true, &crate::routes::RegexBudget::unlimited()).is_err());
    }

    #[test]
    fn grpc_neither_matches_any_call() {
        let p = grpc_method_match(None, None, false, &crate::routes::RegexBudget::unlimited()).unwrap();
        assert!(p.matches("/a.B/C"));
        assert!(!p.matches("/"));
        assert_eq!(grpc_specificity(Some(&p)), (0, 0));
        assert_eq!(grpc_specificity(None), (0, 0));
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-z]{1,4}"
    }

    proptest! {
        /// PathPrefix p matches exactly the paths whose leading elements equal p's elements.
        #[test]
        fn prefix_matches_iff_leading_segments_equal(
            prefix in prop::collection::vec(segment(), 0..4),
            path in prop::collection::vec(segment(), 0..5),
            prefix_slash in any::<bool>(),
            path_slash in any::<bool>(),
        ) {
            let mut prefix_str = format!("/{}", prefix.join("/"));
            if prefix_slash && !prefix.is_empty() { prefix_str.push('/'); }
            let mut path_str = format!("/{}", path.join("/"));
            if path_slash && !path.is_empty() { path_str.push('/'); }
            let expected = path.len() >= prefix.len() && path[..prefix.len()] == prefix[..];
            prop_assert_eq!(PathMatch::Prefix(prefix_str.clone()).matches(&path_str), expected, "{} vs {}", prefix_str, path_str);
        }

        /// Extending a matching path by more elements keeps it matching; glueing
        /// characters onto the last element does not.
        #[test]
        fn prefix_never_matches_partial_element(prefix in prop::collection::vec(segment(), 1..4), tail in "[a-z]{1,3}") {
            let p = PathMatch::Prefix(format!("/{}", prefix.join("/")));
            let base = format!("/{}", prefix.join("/"));
            let deeper = format!("{}/{}", base, tail);
            let glued = format!("{}{}", base, tail);
            prop_assert!(p.matches(&deeper));
            prop_assert!(!p.matches(&glued));
        }

        /// Exact regex of an escaped literal behaves like an exact match.
        #[test]
        fn escaped_regex_equals_exact(value in "[ -~]{0,12}", other in "[ -~]{0,12}") {
            let re = StringMatch::regex(&regex::escape(&value)).unwrap();
            prop_assert_eq!(re.matches(&other), value == other);
            prop_assert!(re.matches(&value));
        }
    }
}
