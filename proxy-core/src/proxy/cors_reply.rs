//! Applying a rule's CORS filter ([`crate::routes::cors`]) around forwarding: a
//! preflight gets the proxy's own answer, any other request's response gets the CORS
//! headers (its local replies too: a browser can then read a 503).

use http::{Response, StatusCode};

use super::body::{self, Body};
use crate::routes::{CorsOutcome, ResponseCors, Rule};

/// What to do with a request before its rule forwards it.
pub(super) enum CorsStep {
    /// Answer with this response; the request goes no further.
    Answer(Response<Body>),
    /// Forward, then add these headers to the response (none: the rule has no CORS filter).
    Forward(Option<ResponseCors>),
}

/// Runs the rule's CORS filter on the request head. A preflight's answer also gets the
/// rule's ResponseHeaderModifier, as every response of the rule does; the CORS headers
/// are set last, on it as on forwarded responses.
pub(super) fn before(rule: &Rule, parts: &http::request::Parts) -> CorsStep {
    let Some(policy) = &rule.filters.cors else { return CorsStep::Forward(None) };
    match policy.evaluate(&parts.method, &parts.headers) {
        CorsOutcome::Forward(cors) => CorsStep::Forward(Some(cors)),
        CorsOutcome::Preflight(cors) => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::OK;
            if let Some(modifier) = &rule.filters.response_headers {
                modifier.apply(response.headers_mut());
            }
            cors.apply(response.headers_mut());
            CorsStep::Answer(response)
        }
    }
}

/// Adds the CORS headers to the response of a forwarded request.
pub(super) fn after(mut response: Response<Body>, cors: Option<ResponseCors>) -> Response<Body> {
    if let Some(cors) = cors {
        cors.apply(response.headers_mut());
    }
    response
}
