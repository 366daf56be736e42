//! HTTPRoute filters: header modifiers, redirects, URL rewrites and mirrors.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

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
        todo!("{}", headers.len())
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
    /// The new path for `path`, given the path match that selected the rule.
    pub fn apply(&self, path: &str, matched: Option<&PathMatch>) -> String {
        todo!("{path} {matched:?}")
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
        todo!("{request_scheme} {authority} {path} {query:?} {matched:?}")
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
