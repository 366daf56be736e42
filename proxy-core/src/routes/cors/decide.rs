//! What a CORS filter does to one request (GEP-1767, and the Fetch standard's CORS
//! protocol it refers to).
//!
//! - **Preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`): the
//!   proxy answers it itself, 200 with no body, and it never reaches a backend. An
//!   allowed origin gets `Access-Control-Allow-Origin` (the request's origin),
//!   `-Allow-Credentials: true` when configured, `-Allow-Methods`, `-Allow-Headers`,
//!   `-Expose-Headers` and `-Max-Age`; a disallowed one gets none of them.
//! - **Any other request** is forwarded. If its origin is allowed, the response gets
//!   `Access-Control-Allow-Origin`, `-Allow-Credentials` when configured and
//!   `-Expose-Headers`; otherwise none.
//! - **Credentials**: a request with `Cookie` or `Authorization` is credentialed
//!   (preflights never are). A credentialed request allowed only through the `*`
//!   entry, on a filter without `allowCredentials`, gets no CORS headers (GEP-1767's
//!   wildcard table). `*` in `allowMethods` or `allowHeaders` answers with the method
//!   or headers the preflight asked for (the form valid with and without credentials);
//!   `*` in `exposeHeaders` is sent as `*`, except to a credentialed request, which gets
//!   the names of the response's own headers.
//! - Every response of the rule gets `Vary: Origin`: what it says depends on it.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

use super::{Allowed, CorsPolicy, Origin};

/// What the filter decided for a request.
#[derive(Debug)]
pub enum CorsOutcome {
    /// A preflight: the proxy answers it, status 200, with these headers.
    Preflight(ResponseCors),
    /// Any other request: forwarded; [`ResponseCors::apply`] adds to its response.
    Forward(ResponseCors),
}

/// The CORS headers for a response.
#[derive(Debug, Default)]
pub struct ResponseCors {
    headers: HeaderMap,
    /// `Access-Control-Expose-Headers` lists the response's own header names.
    expose_response_headers: bool,
}

/// How the request's origin is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Allowance {
    /// By an entry that names it (exactly or with a host wildcard).
    Named,
    /// Only by the `*` entry.
    Wildcard,
}

impl CorsPolicy {
    /// Decides what the filter does for a request with this method and these headers.
    pub fn evaluate(&self, method: &Method, request: &HeaderMap) -> CorsOutcome {
        let origin = single_value(request, &header::ORIGIN);
        let allowance = origin.and_then(|o| self.allowance(o));
        let preflight = *method == Method::OPTIONS
            && request.contains_key(header::ORIGIN)
            && request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let mut headers = HeaderMap::new();
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        let (Some(origin), Some(allowance)) = (origin, allowance) else {
            let cors = ResponseCors { headers, expose_response_headers: false };
            return if preflight { CorsOutcome::Preflight(cors) } else { CorsOutcome::Forward(cors) };
        };
        if preflight {
            self.preflight_headers(origin, request, &mut headers);
            return CorsOutcome::Preflight(ResponseCors { headers, expose_response_headers: false });
        }
        let credentialed = request.contains_key(header::COOKIE) || request.contains_key(header::AUTHORIZATION);
        if credentialed && !self.credentials && allowance == Allowance::Wildcard {
            return CorsOutcome::Forward(ResponseCors { headers, expose_response_headers: false });
        }
        self.common_headers(origin, &mut headers);
        let mut expose_response_headers = false;
        match &self.expose_headers {
            Allowed::Unset => {}
            Allowed::List(list) => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, list.clone());
            }
            Allowed::Wildcard if credentialed => expose_response_headers = true,
            Allowed::Wildcard => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
            }
        }
        CorsOutcome::Forward(ResponseCors { headers, expose_response_headers })
    }

    fn allowance(&self, origin: &HeaderValue) -> Option<Allowance> {
        let origin = Origin::parse(origin.to_str().ok()?)?;
        let mut allowance = None;
        for pattern in self.origins.iter().filter(|p| p.matches(&origin)) {
            if !pattern.is_any() {
                return Some(Allowance::Named);
            }
            allowance = Some(Allowance::Wildcard);
        }
        allowance
    }

    /// `Access-Control-Allow-Origin` and `-Allow-Credentials`.
    fn common_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }

    fn preflight_headers(&self, origin: &HeaderValue, request: &HeaderMap, headers: &mut HeaderMap) {
        self.common_headers(origin, headers);
        let requested_method = single_value(request, &header::ACCESS_CONTROL_REQUEST_METHOD)
            .filter(|m| Method::from_bytes(m.as_bytes()).is_ok());
        let requested_headers = single_value(request, &header::ACCESS_CONTROL_REQUEST_HEADERS).filter(|h| is_name_list(h));
        let pairs = [
            (header::ACCESS_CONTROL_ALLOW_METHODS, &self.methods, requested_method),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, &self.allow_headers, requested_headers),
        ];
        for (name, allowed, requested) in pairs {
            let value = match allowed {
                Allowed::Unset => None,
                Allowed::List(list) => Some(list.clone()),
                Allowed::Wildcard => requested.cloned(),
            };
            if let Some(value) = value {
                headers.insert(name, value);
            }
        }
        match &self.expose_headers {
            Allowed::Unset => {}
            Allowed::List(list) => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, list.clone());
            }
            Allowed::Wildcard => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
            }
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

impl ResponseCors {
    /// Sets the CORS headers on a response (replacing any the backend sent) and adds
    /// `Origin` to its `Vary`.
    pub fn apply(self, response: &mut HeaderMap) {
        if self.expose_response_headers {
            if let Some(names) = own_header_names(response) {
                response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, names);
            }
        }
        for (name, value) in self.headers {
            let Some(name) = name else { continue };
            if name == header::VARY {
                add_vary_origin(response);
            } else {
                response.insert(name, value);
            }
        }
    }

    /// The headers it sets (besides the expose list built from the response).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// Adds `Origin` to `Vary`, unless it is there already (or `Vary: *`).
fn add_vary_origin(response: &mut HeaderMap) {
    let present = response.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("origin")))
    });
    if !present {
        response.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The value of a header that occurs exactly once.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// A comma-separated list of header names (optional whitespace around them).
fn is_name_list(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else { return false };
    text.split(',').all(|n| HeaderName::from_bytes(n.trim().as_bytes()).is_ok())
}

/// The names of a response's headers other than the CORS ones, joined with ", ".
fn own_header_names(response: &HeaderMap) -> Option<HeaderValue> {
    let names: Vec<&str> =
        response.keys().map(HeaderName::as_str).filter(|n| !n.starts_with("access-control-")).collect();
    if names.is_empty() {
        return None;
    }
    HeaderValue::from_str(&names.join(", ")).ok()
}
