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
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    /// None means "any path" (the spec default `PathPrefix /` for HTTPRoute).
    pub path: Option<PathMatch>,
    pub method: Option<Method>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

impl StringMatch {
    /// Compiles an anchored regular expression. Errors carry the regex error text.
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        todo!("anchored regex for {pattern}")
    }

    pub fn matches(&self, value: &str) -> bool {
        todo!("{value}")
    }
}

impl PathMatch {
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        todo!("{pattern}")
    }

    pub fn matches(&self, path: &str) -> bool {
        todo!("{path}")
    }
}

impl RouteMatch {
    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        todo!("{request:?}")
    }
}
