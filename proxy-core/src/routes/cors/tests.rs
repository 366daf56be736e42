//! The CORS filter's behaviour: upstream's HTTPRouteCORS and
//! HTTPRouteCORSAllowCredentialsBehavior cases (Gateway conformance), GEP-1767's
//! wildcard tables, and malformed input.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use proptest::prelude::*;

use super::{CorsConfig, CorsOutcome, CorsPolicy};

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Upstream's route `cors-multiple-origins-methods-headers` (path /cors-1).
fn multiple_origins() -> CorsPolicy {
    CorsPolicy::new(&CorsConfig {
        allow_origins: strings(&["https://www.foo.com", "https://*.bar.com"]),
        allow_methods: strings(&["GET", "OPTIONS"]),
        allow_headers: strings(&["x-header-1", "x-header-2"]),
        expose_headers: strings(&["x-header-3", "x-header-4"]),
        allow_credentials: true,
        max_age: Some(3600),
    })
    .unwrap()
}

/// Upstream's route `cors-wildcard-methods` (path /cors-2).
fn wildcard_methods() -> CorsPolicy {
    CorsPolicy::new(&CorsConfig {
        allow_origins: strings(&["https://www.foo.com"]),
        allow_methods: strings(&["*"]),
        ..Default::default()
    })
    .unwrap()
}

/// Upstream's route `cors-wildcard-origin`.
fn wildcard_origin() -> CorsPolicy {
    CorsPolicy::new(&CorsConfig { allow_origins: strings(&["*"]), allow_methods: strings(&["PUT"]), ..Default::default() }).unwrap()
}

/// Upstream's `cors-wildcard-methods-headers` route, with and without credentials.
fn wildcard_methods_headers(credentials: bool) -> CorsPolicy {
    CorsPolicy::new(&CorsConfig {
        allow_origins: strings(&["https://other.foo.com"]),
        allow_methods: strings(&["*"]),
        allow_headers: strings(&["*"]),
        allow_credentials: credentials,
        ..Default::default()
    })
    .unwrap()
}

fn request(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    headers
}

fn preflight(policy: &CorsPolicy, pairs: &[(&str, &str)]) -> HeaderMap {
    let mut response = HeaderMap::new();
    match policy.evaluate(&Method::OPTIONS, &request(pairs)) {
        CorsOutcome::Preflight(cors) => cors.apply(&mut response),
        CorsOutcome::Forward(_) => panic!("not answered as a preflight: {pairs:?}"),
    }
    response
}

/// The response headers of a forwarded request, given the backend's own.
fn actual(policy: &CorsPolicy, method: Method, pairs: &[(&str, &str)], backend: &[(&str, &str)]) -> HeaderMap {
    let mut response = request(backend);
    match policy.evaluate(&method, &request(pairs)) {
        CorsOutcome::Forward(cors) => cors.apply(&mut response),
        CorsOutcome::Preflight(_) => panic!("answered as a preflight: {pairs:?}"),
    }
    response
}

fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

const CORS_HEADERS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
];

fn assert_no_cors(headers: &HeaderMap) {
    for name in CORS_HEADERS {
        assert!(!headers.contains_key(name), "{name} present in {headers:?}");
    }
}

#[test]
fn preflight_from_exact_and_wildcard_origins() {
    for origin in ["https://www.foo.com", "https://www.bar.com", "https://xpto.www.bar.com"] {
        let h = preflight(
            &multiple_origins(),
            &[("origin", origin), ("access-control-request-method", "GET"), ("access-control-request-headers", "x-header-1, x-header-2")],
        );
        assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("GET, OPTIONS"));
        assert_eq!(get(&h, "access-control-allow-headers"), Some("x-header-1, x-header-2"));
        assert_eq!(get(&h, "access-control-expose-headers"), Some("x-header-3, x-header-4"));
        assert_eq!(get(&h, "access-control-max-age"), Some("3600"));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "vary"), Some("Origin"));
    }
}

#[test]
fn preflight_from_a_disallowed_origin_gets_no_cors_headers() {
    let h = preflight(&multiple_origins(), &[("origin", "https://foobar.com"), ("access-control-request-method", "GET")]);
    assert_no_cors(&h);
    assert_eq!(get(&h, "vary"), Some("Origin"));
    // A malformed origin is a disallowed one, still answered by the proxy.
    for bad in ["null", "https://www.foo.com/", "https://www.foo.com:99999", "www.foo.com"] {
        assert_no_cors(&preflight(&multiple_origins(), &[("origin", bad), ("access-control-request-method", "GET")]));
    }
    // Two Origin headers: neither is trusted.
    assert_no_cors(&preflight(
        &multiple_origins(),
        &[("origin", "https://www.foo.com"), ("origin", "https://www.foo.com"), ("access-control-request-method", "GET")],
    ));
}

#[test]
fn only_options_with_origin_and_request_method_is_a_preflight() {
    let policy = multiple_origins();
    let origin = ("origin", "https://www.foo.com");
    let forwarded = |method: Method, pairs: &[(&str, &str)]| matches!(policy.evaluate(&method, &request(pairs)), CorsOutcome::Forward(_));
    assert!(forwarded(Method::OPTIONS, &[origin]));
    assert!(forwarded(Method::OPTIONS, &[("access-control-request-method", "GET")]));
    assert!(forwarded(Method::GET, &[origin, ("access-control-request-method", "GET")]));
    assert!(!forwarded(Method::OPTIONS, &[origin, ("access-control-request-method", "GET")]));
}

#[test]
fn actual_requests_from_allowed_and_disallowed_origins() {
    for origin in ["https://www.foo.com", "https://www.bar.com"] {
        let h = actual(&multiple_origins(), Method::GET, &[("origin", origin)], &[("content-type", "text/plain")]);
        assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "access-control-expose-headers"), Some("x-header-3, x-header-4"));
        // Preflight-only headers stay off actual responses.
        assert!(!h.contains_key("access-control-max-age") && !h.contains_key("access-control-allow-methods"));
        assert_eq!(get(&h, "content-type"), Some("text/plain"));
    }
    let h = actual(&multiple_origins(), Method::GET, &[("origin", "https://foobar.com")], &[]);
    assert_no_cors(&h);
    assert_eq!(get(&h, "vary"), Some("Origin"));
    // No Origin at all: nothing but Vary.
    let h = actual(&multiple_origins(), Method::GET, &[], &[]);
    assert_no_cors(&h);
    assert_eq!(get(&h, "vary"), Some("Origin"));
}

#[test]
fn wildcard_methods_echo_the_requested_method_and_omit_credentials() {
    let h = preflight(&wildcard_methods(), &[("origin", "https://www.foo.com"), ("access-control-request-method", "POST")]);
    assert_eq!(get(&h, "access-control-allow-methods"), Some("POST"));
    assert_eq!(get(&h, "access-control-allow-origin"), Some("https://www.foo.com"));
    assert!(!h.contains_key("access-control-allow-credentials"));
    assert!(!h.contains_key("access-control-allow-headers"));
    assert_eq!(get(&h, "access-control-max-age"), Some("5"), "the API default");
    // A requested method that is no method token is not echoed.
    let h = preflight(&wildcard_methods(), &[("origin", "https://www.foo.com"), ("access-control-request-method", "BAD METHOD")]);
    assert!(!h.contains_key("access-control-allow-methods"));
}

#[test]
fn wildcard_origin_allows_any_origin_and_port() {
    for origin in ["https://foobar.com", "https://foobar.com:12345"] {
        let h = preflight(&wildcard_origin(), &[("origin", origin), ("access-control-request-method", "PUT")]);
        assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert!(!h.contains_key("access-control-allow-credentials"));
        let h = actual(&wildcard_origin(), Method::PUT, &[("origin", origin)], &[]);
        assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
        assert!(!h.contains_key("access-control-allow-credentials"));
    }
}

#[test]
fn credentialed_requests_with_wildcard_methods_and_headers() {
    let pairs = [("origin", "https://other.foo.com"), ("access-control-request-method", "PUT"), ("access-control-request-headers", "x-header-1, x-header-2")];
    for credentials in [true, false] {
        let h = preflight(&wildcard_methods_headers(credentials), &pairs);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("https://other.foo.com"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(get(&h, "access-control-allow-headers"), Some("x-header-1, x-header-2"));
        assert_eq!(h.contains_key("access-control-allow-credentials"), credentials);
        let auth = [("origin", "https://other.foo.com"), ("authorization", "Bearer test")];
        let h = actual(&wildcard_methods_headers(credentials), Method::GET, &auth, &[]);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("https://other.foo.com"), "a named origin is echoed");
        assert_eq!(h.contains_key("access-control-allow-credentials"), credentials);
    }
    // Wildcard headers without Access-Control-Request-Headers: no Allow-Headers at all.
    let h = preflight(&wildcard_methods_headers(true), &pairs[..2]);
    assert!(!h.contains_key("access-control-allow-headers"));
    // A malformed header list is not echoed.
    let h = preflight(&wildcard_methods_headers(true), &[pairs[0], pairs[1], ("access-control-request-headers", "a b, c")]);
    assert!(!h.contains_key("access-control-allow-headers"));
}

/// HTTPRouteCORSAllowCredentialsBehavior.
#[test]
fn allow_credentials_only_when_configured_and_the_origin_matches() {
    let policy = |credentials| {
        CorsPolicy::new(&CorsConfig { allow_origins: strings(&["https://app.example"]), allow_credentials: credentials, ..Default::default() }).unwrap()
    };
    let creds = |origin| [("origin", origin), ("cookie", "sid=abc123"), ("authorization", "Bearer test")];
    let h = actual(&policy(false), Method::GET, &creds("https://app.example"), &[]);
    assert!(!h.contains_key("access-control-allow-credentials"));
    let h = actual(&policy(true), Method::GET, &creds("http://not-app.example"), &[]);
    assert_no_cors(&h);
    let h = actual(&policy(true), Method::GET, &creds("https://app.example"), &[]);
    assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(get(&h, "access-control-allow-origin"), Some("https://app.example"));
}

/// GEP-1767's table for `allowOrigins: ["*"]`.
#[test]
fn wildcard_origin_and_credentialed_requests() {
    let any = |credentials| CorsPolicy::new(&CorsConfig { allow_origins: strings(&["*"]), allow_credentials: credentials, ..Default::default() }).unwrap();
    let origin = "https://foo.example";
    for credential in [("cookie", "foo=bar"), ("authorization", "Basic eA==")] {
        let h = actual(&any(true), Method::GET, &[("origin", origin), credential], &[]);
        assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_no_cors(&actual(&any(false), Method::GET, &[("origin", origin), credential], &[]));
    }
    let h = actual(&any(false), Method::GET, &[("origin", origin)], &[]);
    assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
    // A named entry next to `*` counts as named: credentialed requests keep their headers.
    let both = CorsPolicy::new(&CorsConfig { allow_origins: strings(&["*", origin]), ..Default::default() }).unwrap();
    let h = actual(&both, Method::GET, &[("origin", origin), ("cookie", "a=b")], &[]);
    assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
}

#[test]
fn expose_headers_wildcard() {
    let policy = |credentials| {
        CorsPolicy::new(&CorsConfig {
            allow_origins: strings(&["https://a.example"]),
            expose_headers: strings(&["*"]),
            allow_credentials: credentials,
            ..Default::default()
        })
        .unwrap()
    };
    let backend = [("content-encoding", "gzip"), ("kuma-revision", "1"), ("access-control-allow-origin", "https://evil.example")];
    let h = actual(&policy(true), Method::GET, &[("origin", "https://a.example")], &backend);
    assert_eq!(get(&h, "access-control-expose-headers"), Some("*"));
    assert_eq!(get(&h, "access-control-allow-origin"), Some("https://a.example"), "the backend's value is replaced");
    let h = actual(&policy(true), Method::GET, &[("origin", "https://a.example"), ("cookie", "a=b")], &backend);
    assert_eq!(get(&h, "access-control-expose-headers"), Some("content-encoding, kuma-revision"));
    let h = preflight(&policy(true), &[("origin", "https://a.example"), ("access-control-request-method", "GET")]);
    assert_eq!(get(&h, "access-control-expose-headers"), Some("*"));
}

#[test]
fn vary_keeps_the_backends_values_and_is_not_repeated() {
    let h = actual(&multiple_origins(), Method::GET, &[("origin", "https://www.foo.com")], &[("vary", "Accept-Encoding")]);
    let vary: Vec<_> = h.get_all("vary").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    for existing in ["origin", "Accept, Origin", "*"] {
        let h = actual(&multiple_origins(), Method::GET, &[], &[("vary", existing)]);
        assert_eq!(h.get_all("vary").iter().count(), 1, "{existing}");
    }
}

proptest! {
    /// Any header bytes in Origin, the request method and headers, or the backend's
    /// response never make the filter panic, and a disallowed origin never gets an
    /// Access-Control-Allow-Origin.
    #[test]
    fn arbitrary_requests_never_panic(
        origin in proptest::collection::vec(any::<u8>(), 0..64),
        method in "[A-Z]{1,8}",
        requested in proptest::collection::vec(any::<u8>(), 0..64),
        credentialed in any::<bool>(),
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&origin) {
            headers.insert("origin", v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&requested) {
            headers.insert("access-control-request-method", v.clone());
            headers.insert("access-control-request-headers", v);
        }
        if credentialed {
            headers.insert("cookie", HeaderValue::from_static("a=b"));
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for policy in [multiple_origins(), wildcard_methods(), wildcard_origin(), wildcard_methods_headers(true)] {
            let allowed = headers.get("origin").is_some_and(|o| {
                o.as_bytes() == b"https://www.foo.com" || o.as_bytes() == b"https://other.foo.com"
                    || o.as_bytes().ends_with(b".bar.com") || policy.origins().iter().any(|p| p.is_any())
            });
            let (CorsOutcome::Preflight(cors) | CorsOutcome::Forward(cors)) = policy.evaluate(&method, &headers);
            let mut response = HeaderMap::new();
            cors.apply(&mut response);
            if !allowed {
                prop_assert!(!response.contains_key("access-control-allow-origin"));
            }
        }
    }
}
