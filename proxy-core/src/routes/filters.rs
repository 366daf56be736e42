//! HTTPRoute filters: header modifiers, redirects, URL rewrites and mirrors.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::matching::prefix_core;
use super::{BackendTarget, PathMatch};

/// RequestHeaderModifier / ResponseHeaderModifier. Names are case-insensitive.
#[derive(Clone, Debug, Default)]
pub struct HeaderModifier {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    /// Applies set, then add, then remove, as the spec orders them. `add` appends a value
    /// (a second header line), keeping existing ones.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A path modification for RequestRedirect or URLRewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// Replaces the matched prefix (only valid with a PathPrefix match).
    ReplacePrefixMatch(String),
}

impl PathModifier {
    /// The new path for `path` (without query), given the path match that selected the
    /// rule.
    ///
    /// `ReplacePrefixMatch` follows the table in the spec (HTTPPathModifier): the
    /// matched prefix and the replacement are both taken without a trailing `/`, the
    /// rest of the path (empty, or starting with `/`) is appended unchanged, and an
    /// empty result becomes `/`. So `/foo` → `/xyz` turns `/foo/bar` into `/xyz/bar`,
    /// `/foo/` into `/xyz/`, and `/` as replacement turns `/foo/bar` into `/bar` and
    /// `/foo` into `/`. No match (a rule without matches) counts as `PathPrefix /`; an
    /// `Exact` match is its own prefix. The spec rejects `ReplacePrefixMatch` with a
    /// regex match; should one arrive anyway, or should the path not start with the
    /// prefix, the path is left unchanged.
    pub fn apply(&self, path: &str, matched: Option<&PathMatch>) -> String {
        match self {
            PathModifier::ReplaceFullPath(full) => full.clone(),
            PathModifier::ReplacePrefixMatch(replacement) => {
                let prefix = match matched {
                    None => "",
                    Some(PathMatch::Prefix(p)) => prefix_core(p),
                    Some(PathMatch::Exact(p)) => prefix_core(p),
                    Some(PathMatch::Regex(_)) => return path.to_owned(),
                };
                let rest = match path.strip_prefix(prefix) {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                    _ => return path.to_owned(),
                };
                let replacement = replacement.trim_end_matches('/');
                let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
                if !replacement.starts_with('/') {
                    out.push('/');
                }
                out.push_str(replacement);
                if out.len() > 1 || !rest.is_empty() {
                    // `out` is "/" only for an empty replacement; avoid "//rest".
                    if out == "/" {
                        out.clear();
                    }
                    out.push_str(rest);
                }
                out
            }
        }
    }
}

/// Redirect status codes the spec allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectStatus {
    MovedPermanently,
    Found,
    SeeOther,
    TemporaryRedirect,
    PermanentRedirect,
}

impl RedirectStatus {
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            301 => Self::MovedPermanently,
            302 => Self::Found,
            303 => Self::SeeOther,
            307 => Self::TemporaryRedirect,
            308 => Self::PermanentRedirect,
            _ => return None,
        })
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::MovedPermanently => StatusCode::MOVED_PERMANENTLY,
            Self::Found => StatusCode::FOUND,
            Self::SeeOther => StatusCode::SEE_OTHER,
            Self::TemporaryRedirect => StatusCode::TEMPORARY_REDIRECT,
            Self::PermanentRedirect => StatusCode::PERMANENT_REDIRECT,
        }
    }
}

/// RequestRedirect.
#[derive(Clone, Debug)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: RedirectStatus,
}

impl Redirect {
    /// The `Location` for a request with the given scheme, Host (authority) and path,
    /// following the spec's port rules: an unset port keeps the request's port, except
    /// that a scheme change without a port uses the new scheme's well-known port; a
    /// well-known port for the resulting scheme (80 for http, 443 for https) is omitted.
    pub fn location(
        &self,
        request_scheme: &str,
        authority: &str,
        path: &str,
        query: Option<&str>,
        matched: Option<&PathMatch>,
    ) -> String {
        let request_scheme = request_scheme.to_ascii_lowercase();
        let (request_host, request_port) = split_authority(authority);
        let scheme = self.scheme.as_deref().map(str::to_ascii_lowercase).unwrap_or_else(|| request_scheme.clone());
        let host = self.hostname.as_deref().unwrap_or(request_host);
        let port = match (self.port, &self.scheme) {
            (Some(port), _) => Some(port),
            (None, Some(_)) => well_known_port(&scheme).or(request_port),
            (None, None) => request_port.or_else(|| well_known_port(&request_scheme)),
        };
        let path = match &self.path {
            Some(modifier) => modifier.apply(path, matched),
            None => path.to_owned(),
        };
        let mut location = format!("{scheme}://{host}");
        if let Some(port) = port.filter(|p| Some(*p) != well_known_port(&scheme)) {
            location.push(':');
            location.push_str(&port.to_string());
        }
        location.push_str(&path);
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

/// The port a URL of this scheme has when it names none.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Splits a Host/authority value into host and port (a bracketed IPv6 literal keeps its
/// brackets; any `user@` part is dropped; an unparseable port counts as absent).
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let port = authority[end + 1..].strip_prefix(':').and_then(|p| p.parse().ok());
                (&authority[..=end], port)
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (authority, None),
    }
}

/// URLRewrite.
#[derive(Clone, Debug, Default)]
pub struct UrlRewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

/// RequestMirror: a copy of the request goes to `backend`, its response is discarded.
#[derive(Clone, Debug)]
pub struct Mirror {
    pub backend: BackendTarget,
    /// Share of requests mirrored, as a fraction in [0, 1] (percent or fraction in the spec).
    pub fraction: f64,
}

impl Mirror {
    /// Whether this request is to be mirrored (true with probability `fraction`).
    pub fn sampled(&self) -> bool {
        self.sampled_with(&mut rand::rng())
    }

    /// [`sampled`](Self::sampled) with a caller-supplied random source.
    pub fn sampled_with<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> bool {
        if self.fraction >= 1.0 {
            true
        } else if self.fraction > 0.0 {
            rng.random::<f64>() < self.fraction
        } else {
            // 0, negative or NaN.
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hn(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }

    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    /// All values of a header joined with "," (how the conformance echo check reads them).
    fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
        let values: Vec<_> = headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// The modifier of MeshHTTPRouteRewritePath (rules 3 and 4) and the request headers
    /// of its cases 4 and 5.
    #[test]
    fn header_modifier_conformance_rewrite_path_case() {
        let modifier = HeaderModifier {
            set: vec![(hn("x-header-set"), hv("set-overwrites-values"))],
            add: vec![(hn("x-header-add"), hv("header-val-1")), (hn("x-header-add-append"), hv("header-val-2"))],
            remove: vec![hn("x-header-remove")],
        };
        let mut headers = HeaderMap::new();
        headers.insert(hn("x-header-remove"), hv("remove-val"));
        headers.insert(hn("x-header-add-append"), hv("append-val-1"));
        headers.insert(hn("x-header-set"), hv("set-val"));
        headers.insert(hn("other"), hv("kept"));
        modifier.apply(&mut headers);
        assert_eq!(joined(&headers, "x-header-add").as_deref(), Some("header-val-1"));
        assert_eq!(joined(&headers, "x-header-add-append").as_deref(), Some("append-val-1,header-val-2"));
        assert_eq!(headers.get_all("x-header-add-append").iter().count(), 2, "add appends a separate line");
        assert_eq!(joined(&headers, "x-header-set").as_deref(), Some("set-overwrites-values"));
        assert!(!headers.contains_key("x-header-remove"));
        assert_eq!(joined(&headers, "other").as_deref(), Some("kept"));
    }

    #[test]
    fn set_replaces_every_value_and_creates_missing_headers() {
        let modifier = HeaderModifier { set: vec![(hn("a"), hv("new")), (hn("b"), hv("1"))], ..Default::default() };
        let mut headers = HeaderMap::new();
        headers.append(hn("a"), hv("x"));
        headers.append(hn("a"), hv("y"));
        modifier.apply(&mut headers);
        assert_eq!(joined(&headers, "a").as_deref(), Some("new"));
        assert_eq!(joined(&headers, "b").as_deref(), Some("1"));
    }

    #[test]
    fn remove_deletes_every_value_case_insensitively() {
        let modifier = HeaderModifier {
            remove: vec![HeaderName::from_bytes(b"My-Header1").unwrap(), hn("absent")],
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        headers.append(hn("my-header1"), hv("foo"));
        headers.append(hn("my-header1"), hv("foo2"));
        headers.append(hn("my-header2"), hv("bar"));
        modifier.apply(&mut headers);
        assert!(!headers.contains_key("my-header1"));
        assert_eq!(joined(&headers, "my-header2").as_deref(), Some("bar"));
        assert!(!modifier.is_empty());
        assert!(HeaderModifier::default().is_empty());
    }

    #[test]
    fn add_to_absent_header_creates_it() {
        let modifier = HeaderModifier { add: vec![(hn("a"), hv("1")), (hn("a"), hv("2"))], ..Default::default() };
        let mut headers = HeaderMap::new();
        modifier.apply(&mut headers);
        assert_eq!(joined(&headers, "a").as_deref(), Some("1,2"));
    }

    fn pfx(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
        PathModifier::ReplacePrefixMatch(replacement.into()).apply(path, Some(&pfx(prefix)))
    }

    /// Every row of the spec's ReplacePrefixMatch table (HTTPPathModifier).
    #[test]
    fn replace_prefix_match_spec_table() {
        let table = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
        ];
        for (path, prefix, replacement, expected) in table {
            assert_eq!(replace_prefix(path, prefix, replacement), expected, "{path} {prefix} {replacement}");
        }
    }

    /// MeshHTTPRouteRewritePath cases 0, 1, 2 and 5, and the ReplacePrefixMatch
    /// redirects of MeshHTTPRouteRedirectPath.
    #[test]
    fn replace_prefix_match_conformance() {
        assert_eq!(replace_prefix("/prefix/one/two", "/prefix/one", "/one"), "/one/two");
        assert_eq!(replace_prefix("/strip-prefix/three", "/strip-prefix", "/"), "/three");
        assert_eq!(replace_prefix("/strip-prefix", "/strip-prefix", "/"), "/");
        assert_eq!(
            replace_prefix(
                "/prefix/rewrite-path-and-modify-headers/one",
                "/prefix/rewrite-path-and-modify-headers",
                "/prefix"
            ),
            "/prefix/one"
        );
        assert_eq!(
            replace_prefix("/original-prefix/lemon", "/original-prefix", "/replacement-prefix"),
            "/replacement-prefix/lemon"
        );
        assert_eq!(replace_prefix("/path-and-host", "/path-and-host", "/replacement-prefix"), "/replacement-prefix");
    }

    #[test]
    fn replace_prefix_match_edge_cases() {
        // Root prefix (and no match at all, the default PathPrefix /) prepends.
        assert_eq!(replace_prefix("/a/b", "/", "/x"), "/x/a/b");
        assert_eq!(PathModifier::ReplacePrefixMatch("/x".into()).apply("/a", None), "/x/a");
        assert_eq!(replace_prefix("/a", "/", "/"), "/a");
        // Exact match: its own value is the prefix.
        let exact = PathMatch::Exact("/a/b".into());
        assert_eq!(PathModifier::ReplacePrefixMatch("/z".into()).apply("/a/b", Some(&exact)), "/z");
        // Regex (rejected by the spec) and non-matching paths are left alone.
        let re = PathMatch::regex("/a.*").unwrap();
        assert_eq!(PathModifier::ReplacePrefixMatch("/z".into()).apply("/abc", Some(&re)), "/abc");
        assert_eq!(replace_prefix("/foobar", "/foo", "/z"), "/foobar");
        // Replacement without a leading slash still yields an absolute path.
        assert_eq!(replace_prefix("/foo/bar", "/foo", "xyz"), "/xyz/bar");
    }

    #[test]
    fn replace_full_path() {
        let m = PathModifier::ReplaceFullPath("/one".into());
        assert_eq!(m.apply("/full/one/two", Some(&pfx("/full/one"))), "/one");
        assert_eq!(m.apply("/anything", None), "/one");
    }

    fn redirect() -> Redirect {
        Redirect { scheme: None, hostname: None, port: None, path: None, status: RedirectStatus::Found }
    }

    /// Checks a Location against a conformance `redirect` block, as the README's
    /// "What the declared redirect block means" describes, for an original request
    /// `http://echo<path>`.
    fn check_declared(
        location: &str,
        scheme: Option<&str>,
        host: Option<&str>,
        port: Option<&str>,
        path: Option<&str>,
        request_path: &str,
    ) {
        let (got_scheme, rest) = location.split_once("://").expect("absolute Location");
        let (authority, got_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let got_path = got_path.split('?').next().unwrap();
        let (got_host, got_port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        assert_eq!(got_scheme, scheme.unwrap_or("http"), "{location}");
        if let Some(host) = host {
            assert_eq!(got_host, host, "{location}");
        }
        assert_eq!(got_path, path.unwrap_or(request_path), "{location}");
        match port {
            Some(port) => assert_eq!(got_port, Some(port), "{location}"),
            None => {
                let default = if got_scheme == "https" { "443" } else { "80" };
                assert!(got_port.is_none() || got_port == Some(default), "{location}");
            }
        }
    }

    struct Case {
        /// Request path (the rule's PathPrefix equals it in these tests).
        path: &'static str,
        prefix: &'static str,
        filter: Redirect,
        /// Declared redirect block: scheme, host, port, path.
        declared: (Option<&'static str>, Option<&'static str>, Option<&'static str>, Option<&'static str>),
        status: u16,
        /// The exact Location this implementation produces.
        location: &'static str,
    }

    fn with(f: impl FnOnce(&mut Redirect)) -> Redirect {
        let mut r = redirect();
        f(&mut r);
        r
    }

    fn conformance_cases() -> Vec<Case> {
        let rp = || Some(PathModifier::ReplacePrefixMatch("/replacement-prefix".into()));
        let host = || Some("example.org".to_owned());
        let https = || Some("https".to_owned());
        let s301 = RedirectStatus::MovedPermanently;
        vec![
            // MeshHTTPRouteRedirectPath
            Case {
                path: "/original-prefix/lemon",
                prefix: "/original-prefix",
                filter: with(|r| r.path = rp()),
                declared: (None, None, None, Some("/replacement-prefix/lemon")),
                status: 302,
                location: "http://echo/replacement-prefix/lemon",
            },
            Case {
                path: "/full/path/original",
                prefix: "/full",
                filter: with(|r| r.path = Some(PathModifier::ReplaceFullPath("/full-path-replacement".into()))),
                declared: (None, None, None, Some("/full-path-replacement")),
                status: 302,
                location: "http://echo/full-path-replacement",
            },
            Case {
                path: "/path-and-host",
                prefix: "/path-and-host",
                filter: with(|r| {
                    r.hostname = host();
                    r.path = rp();
                }),
                declared: (None, Some("example.org"), None, Some("/replacement-prefix")),
                status: 302,
                location: "http://example.org/replacement-prefix",
            },
            Case {
                path: "/path-and-status",
                prefix: "/path-and-status",
                filter: with(|r| {
                    r.path = rp();
                    r.status = s301;
                }),
                declared: (None, None, None, Some("/replacement-prefix")),
                status: 301,
                location: "http://echo/replacement-prefix",
            },
            Case {
                path: "/full-path-and-host",
                prefix: "/full-path-and-host",
                filter: with(|r| {
                    r.hostname = host();
                    r.path = Some(PathModifier::ReplaceFullPath("/replacement-full".into()));
                }),
                declared: (None, Some("example.org"), None, Some("/replacement-full")),
                status: 302,
                location: "http://example.org/replacement-full",
            },
            Case {
                path: "/full-path-and-status",
                prefix: "/full-path-and-status",
                filter: with(|r| {
                    r.path = Some(PathModifier::ReplaceFullPath("/replacement-full".into()));
                    r.status = s301;
                }),
                declared: (None, None, None, Some("/replacement-full")),
                status: 301,
                location: "http://echo/replacement-full",
            },
            // MeshHTTPRouteRedirectPort
            Case {
                path: "/port",
                prefix: "/port",
                filter: with(|r| r.port = Some(8083)),
                declared: (None, None, Some("8083"), None),
                status: 302,
                location: "http://echo:8083/port",
            },
            Case {
                path: "/port-and-host",
                prefix: "/port-and-host",
                filter: with(|r| {
                    r.hostname = host();
                    r.port = Some(8083);
                }),
                declared: (None, Some("example.org"), Some("8083"), None),
                status: 302,
                location: "http://example.org:8083/port-and-host",
            },
            Case {
                path: "/port-and-status",
                prefix: "/port-and-status",
                filter: with(|r| {
                    r.port = Some(8083);
                    r.status = s301;
                }),
                declared: (None, None, Some("8083"), None),
                status: 301,
                location: "http://echo:8083/port-and-status",
            },
            Case {
                path: "/port-and-host-and-status",
                prefix: "/port-and-host-and-status",
                filter: with(|r| {
                    r.port = Some(8083);
                    r.hostname = host();
                }),
                declared: (None, Some("example.org"), Some("8083"), None),
                status: 302,
                location: "http://example.org:8083/port-and-host-and-status",
            },
            // MeshHTTPRouteSchemeRedirect
            Case {
                path: "/scheme",
                prefix: "/scheme",
                filter: with(|r| r.scheme = https()),
                declared: (Some("https"), None, None, None),
                status: 302,
                location: "https://echo/scheme",
            },
            Case {
                path: "/scheme-and-host",
                prefix: "/scheme-and-host",
                filter: with(|r| {
                    r.scheme = https();
                    r.hostname = host();
                }),
                declared: (Some("https"), Some("example.org"), None, None),
                status: 302,
                location: "https://example.org/scheme-and-host",
            },
            Case {
                path: "/scheme-and-status",
                prefix: "/scheme-and-status",
                filter: with(|r| {
                    r.scheme = https();
                    r.status = s301;
                }),
                declared: (Some("https"), None, None, None),
                status: 301,
                location: "https://echo/scheme-and-status",
            },
            Case {
                path: "/scheme-and-host-and-status",
                prefix: "/scheme-and-host-and-status",
                filter: with(|r| {
                    r.scheme = https();
                    r.hostname = host();
                }),
                declared: (Some("https"), Some("example.org"), None, None),
                status: 302,
                location: "https://example.org/scheme-and-host-and-status",
            },
            // MeshHTTPRoute303/307/308Redirect
            Case {
                path: "/redirect",
                prefix: "/redirect",
                filter: with(|r| r.status = RedirectStatus::SeeOther),
                declared: (None, None, None, Some("/redirect")),
                status: 303,
                location: "http://echo/redirect",
            },
            Case {
                path: "/temporary",
                prefix: "/temporary",
                filter: with(|r| r.status = RedirectStatus::TemporaryRedirect),
                declared: (None, None, None, Some("/temporary")),
                status: 307,
                location: "http://echo/temporary",
            },
            Case {
                path: "/permanent",
                prefix: "/permanent",
                filter: with(|r| r.status = RedirectStatus::PermanentRedirect),
                declared: (None, None, None, Some("/permanent")),
                status: 308,
                location: "http://echo/permanent",
            },
        ]
    }

    #[test]
    fn redirect_conformance_cases() {
        for case in conformance_cases() {
            let matched = pfx(case.prefix);
            let location = case.filter.location("http", "echo", case.path, None, Some(&matched));
            let (scheme, host, port, path) = case.declared;
            check_declared(&location, scheme, host, port, path, case.path);
            assert_eq!(location, case.location);
            assert_eq!(case.filter.status.status().as_u16(), case.status, "{}", case.path);
            // The same request with an explicit default port gives the same Location.
            let again = case.filter.location("http", "echo:80", case.path, None, Some(&matched));
            assert_eq!(again, location);
        }
    }

    #[test]
    fn redirect_port_rules() {
        // No scheme, no port: the request's port, omitted when well known.
        assert_eq!(redirect().location("http", "svc:8080", "/p", None, None), "http://svc:8080/p");
        assert_eq!(redirect().location("https", "svc:443", "/p", None, None), "https://svc/p");
        assert_eq!(redirect().location("https", "svc:80", "/p", None, None), "https://svc:80/p");
        // Scheme set, no port: the well-known port of the new scheme, so omitted.
        let https = with(|r| r.scheme = Some("https".into()));
        assert_eq!(https.location("http", "svc:8080", "/p", None, None), "https://svc/p");
        let http = with(|r| r.scheme = Some("http".into()));
        assert_eq!(http.location("https", "svc:8443", "/p", None, None), "http://svc/p");
        // Port set: always used, omitted only when it is the scheme's well-known port.
        let p443 = with(|r| {
            r.scheme = Some("https".into());
            r.port = Some(443);
        });
        assert_eq!(p443.location("http", "svc", "/p", None, None), "https://svc/p");
        let p80 = with(|r| r.port = Some(80));
        assert_eq!(p80.location("http", "svc:8080", "/p", None, None), "http://svc/p");
        let p443_http = with(|r| r.port = Some(443));
        assert_eq!(p443_http.location("http", "svc", "/p", None, None), "http://svc:443/p");
    }

    #[test]
    fn redirect_keeps_query_and_handles_authorities() {
        let r = with(|r| r.path = Some(PathModifier::ReplaceFullPath("/new".into())));
        assert_eq!(r.location("http", "svc", "/old", Some("a=1&b=2"), None), "http://svc/new?a=1&b=2");
        assert_eq!(redirect().location("http", "svc", "/old", Some(""), None), "http://svc/old");
        assert_eq!(redirect().location("HTTP", "[::1]:8080", "/", None, None), "http://[::1]:8080/");
        assert_eq!(redirect().location("http", "[fd00::1]", "/", None, None), "http://[fd00::1]/");
        let host = with(|r| r.hostname = Some("example.org".into()));
        assert_eq!(host.location("http", "svc.ns:9000", "/x", None, None), "http://example.org:9000/x");
        assert_eq!(host.location("http", "user@svc:9000", "/x", None, None), "http://example.org:9000/x");
    }

    #[test]
    fn redirect_status_codes() {
        for code in [301u16, 302, 303, 307, 308] {
            assert_eq!(RedirectStatus::from_code(code).unwrap().status().as_u16(), code);
        }
        assert_eq!(RedirectStatus::from_code(300), None);
        assert_eq!(RedirectStatus::from_code(304), None);
    }

    #[test]
    fn mirror_sampling() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mirror = |fraction| Mirror { backend: BackendTarget::Invalid { reason: "test".into() }, fraction };
        assert!((0..100).all(|_| mirror(1.0).sampled_with(&mut rng)));
        assert!((0..100).all(|_| !mirror(0.0).sampled_with(&mut rng)));
        assert!(!mirror(f64::NAN).sampled());
        let hits = (0..10_000).filter(|_| mirror(0.25).sampled_with(&mut rng)).count();
        assert!((2_250..2_750).contains(&hits), "{hits}");
    }

    proptest! {
        /// ReplacePrefixMatch keeps everything after the matched prefix and never
        /// produces `//` or a relative path.
        #[test]
        fn replace_prefix_properties(
            prefix in prop::collection::vec("[a-z]{1,3}", 0..3),
            rest in prop::collection::vec("[a-z]{1,3}", 0..3),
            replacement in prop::collection::vec("[a-z]{1,3}", 0..3),
            prefix_slash in any::<bool>(),
            rest_slash in any::<bool>(),
            replacement_slash in any::<bool>(),
        ) {
            let mut prefix_s = format!("/{}", prefix.join("/"));
            if prefix_slash && !prefix.is_empty() { prefix_s.push('/'); }
            let mut path = format!("/{}", prefix.iter().chain(&rest).cloned().collect::<Vec<_>>().join("/"));
            if rest_slash && path != "/" { path.push('/'); }
            let mut repl = format!("/{}", replacement.join("/"));
            if replacement_slash && !replacement.is_empty() { repl.push('/'); }
            prop_assume!(pfx(&prefix_s).matches(&path));
            let out = replace_prefix(&path, &prefix_s, &repl);
            prop_assert!(out.starts_with('/'));
            prop_assert!(!out.contains("//"), "{} {} {} -> {}", path, prefix_s, repl, out);
            // The elements after the prefix follow the replacement's elements.
            let elems = |s: &str| s.split('/').filter(|e| !e.is_empty()).map(str::to_owned).collect::<Vec<_>>();
            let expected: Vec<String> = replacement.iter().chain(&rest).cloned().collect();
            prop_assert_eq!(elems(&out), expected);
            // A trailing slash survives exactly when the path had one after the prefix
            // (unless the result is just "/").
            let path_rest = &path[prefix_s.trim_end_matches('/').len()..];
            if out != "/" {
                prop_assert_eq!(out.ends_with('/'), path_rest.ends_with('/'), "{} {} {} -> {}", path, prefix_s, repl, out);
            }
        }
    }
}
