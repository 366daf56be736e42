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
