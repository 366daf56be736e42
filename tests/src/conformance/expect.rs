//! Checking one client result against a case's declared expectations.

use crate::client::RequestResult;

use super::case::{Case, Waivable};

/// Every way `result` differs from what `case` declares (empty: the case passed).
pub fn check(case: &Case, result: &RequestResult) -> Vec<String> {
    let mut problems = Vec::new();
    let expect = &case.expect;
    if let Some(error) = &result.error {
        // A gRPC error still carries a status; anything else is a failed exchange.
        if result.status.is_none() {
            problems.push(format!("request failed: {error}"));
            return problems;
        }
    }
    let status = result.status.unwrap_or(0);
    if status != expect.status {
        problems.push(format!("status {status}, expected {}", expect.status));
    }
    for (name, want) in &expect.headers {
        let got = result.header(name).unwrap_or("");
        if got != want {
            problems.push(format!("response header {name}: got {got:?}, expected {want:?}"));
        }
    }
    for name in &expect.absent_headers {
        if let Some(got) = result.header(name) {
            problems.push(format!("response header {name} must be absent, got {got:?}"));
        }
    }
    if let Some(prefix) = expect.backend.as_deref().filter(|b| !b.is_empty()) {
        match result.echo_pod() {
            Some(pod) if pod.starts_with(prefix) => {}
            other => problems.push(format!("answered by {other:?}, expected a pod named {prefix}*")),
        }
    }
    if let Some(want) = &expect.namespace {
        // Only meaningful when an echo pod answered (redirects and proxy replies have none).
        if expect.backend.is_some() || result.echo_pod().is_some() {
            match result.echo_namespace() {
                Some(ns) if ns == want => {}
                other => problems.push(format!("backend namespace {other:?}, expected {want:?}")),
            }
        }
    }
    for (name, want) in &expect.request_headers {
        let got = result.echo_request_header(name).join(",");
        if &got != want {
            problems.push(format!("backend received {name}: {got:?}, expected {want:?}"));
        }
    }
    for name in &expect.absent_request_headers {
        let got = result.echo_request_header(name);
        if !got.is_empty() {
            problems.push(format!("backend must not receive {name}, got {got:?}"));
        }
    }
    if let Some(want) = &expect.request_path {
        if !case.waived(Waivable::RequestPath) {
            let got = echo_field(result, "path");
            if got.as_deref() != Some(want.as_str()) {
                problems.push(format!("backend saw path {got:?}, expected {want:?}"));
            }
        }
    }
    if let Some(want) = &expect.request_host {
        if !case.waived(Waivable::RequestHost) {
            let got = echo_field(result, "host");
            if got.as_deref() != Some(want.as_str()) {
                problems.push(format!("backend saw host {got:?}, expected {want:?}"));
            }
        }
    }
    if let Some(redirect) = &expect.redirect {
        if !case.waived(Waivable::Redirect) {
            problems.extend(check_location(case, result.header("location")));
            if redirect.status != status {
                problems.push(format!("redirect status {status}, expected {}", redirect.status));
            }
        }
    }
    problems
}

fn echo_field(result: &RequestResult, key: &str) -> Option<String> {
    result.body.as_ref()?.get(key)?.as_str().map(str::to_owned)
}

/// The parts of an absolute `Location`.
#[derive(Debug, PartialEq, Eq)]
pub struct Location {
    pub scheme: String,
    pub host: String,
    pub port: Option<String>,
    pub path: String,
}

pub fn parse_location(location: &str) -> Option<Location> {
    let (scheme, rest) = location.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('?').next().unwrap_or("/").to_owned();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => (h.to_owned(), Some(p.to_owned())),
        _ => (authority.to_owned(), None),
    };
    Some(Location { scheme: scheme.to_owned(), host, port, path })
}

/// Compares `Location` with the declared redirect by the rules in the conformance README.
pub fn check_location(case: &Case, location: Option<&str>) -> Vec<String> {
    let Some(redirect) = &case.expect.redirect else { return vec![] };
    let Some(location) = location else { return vec!["redirect without a Location header".into()] };
    let Some(got) = parse_location(location) else {
        return vec![format!("Location {location:?} is not an absolute URL")];
    };
    let mut problems = Vec::new();
    let request_scheme = if case.request.protocol == "grpc" { "http" } else { case.request.protocol.as_str() };
    let want_scheme = redirect.scheme.as_deref().unwrap_or(request_scheme);
    if got.scheme != want_scheme {
        problems.push(format!("Location {location:?}: scheme {}, expected {want_scheme}", got.scheme));
    }
    if let Some(host) = &redirect.host {
        if &got.host != host {
            problems.push(format!("Location {location:?}: host {}, expected {host}", got.host));
        }
    }
    match &redirect.port {
        Some(port) => {
            if got.port.as_deref() != Some(port.as_str()) {
                problems.push(format!("Location {location:?}: port {:?}, expected {port}", got.port));
            }
        }
        None => {
            let default = if got.scheme == "https" { "443" } else { "80" };
            if got.port.as_deref().is_some_and(|p| p != default) {
                problems.push(format!("Location {location:?}: port {:?}, expected {default} or none", got.port));
            }
        }
    }
    let request_path = case.request.path.split('?').next().unwrap_or("/");
    let want_path = redirect.path.as_deref().unwrap_or(request_path);
    if got.path != want_path {
        problems.push(format!("Location {location:?}: path {}, expected {want_path}", got.path));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            parse_location("https://example.org:8443/a/b?x=1"),
            Some(Location { scheme: "https".into(), host: "example.org".into(), port: Some("8443".into()), path: "/a/b".into() })
        );
        assert_eq!(parse_location("http://echo").unwrap().path, "/");
        assert_eq!(parse_location("/relative"), None);
    }

    fn case_from(yaml: &str) -> Case {
        serde_yaml::from_str(yaml).unwrap()
    }

    const REDIRECT_CASE: &str = r#"
name: t
client: {app: echo-v1, namespace: ns}
request: {host: echo, method: GET, path: /scheme-and-host, headers: {}, protocol: http}
expect:
  status: 302
  backend: null
  redirect: {scheme: https, host: example.org, port: null, path: null, status: 302}
weights: null
"#;

    #[test]
    fn location_rules_follow_the_readme() {
        let case = case_from(REDIRECT_CASE);
        assert!(check_location(&case, Some("https://example.org/scheme-and-host")).is_empty());
        assert!(check_location(&case, Some("https://example.org:443/scheme-and-host")).is_empty());
        assert!(!check_location(&case, Some("https://example.org:80/scheme-and-host")).is_empty());
        assert!(!check_location(&case, Some("http://example.org/scheme-and-host")).is_empty());
        assert!(!check_location(&case, Some("https://example.org/other")).is_empty());
        assert!(!check_location(&case, None).is_empty());
    }

    #[test]
    fn request_headers_are_joined_with_a_bare_comma() {
        let case = case_from(
            r#"
name: t
client: {app: echo-v1, namespace: ns}
request: {host: echo, method: GET, path: /add, headers: {}, protocol: http}
expect:
  status: 200
  backend: echo-v1
  request_headers: {x-header-add: "a,b"}
weights: null
"#,
        );
        let mut result = RequestResult { status: Some(200), ..Default::default() };
        result.body = Some(serde_json::json!({"pod": "echo-v1-abc-def", "headers": {"X-Header-Add": ["a", "b"]}}));
        assert!(check(&case, &result).is_empty(), "{:?}", check(&case, &result));
        result.body = Some(serde_json::json!({"pod": "echo-v1-abc-def", "headers": {"X-Header-Add": ["a, b"]}}));
        assert_eq!(check(&case, &result).len(), 1);
        result.body = Some(serde_json::json!({"pod": "echo-v2-abc-def", "headers": {"X-Header-Add": ["a", "b"]}}));
        assert_eq!(check(&case, &result).len(), 1);
    }
}
