//! Responses the proxy produces itself (no route, no backend, timeouts, redirects).

use http::{header, HeaderValue, Response, StatusCode};

use super::body::{self, Body};
use crate::limits::Limit;

/// Response header naming the cap that refused a request (see [`LocalReply::Limited`]).
pub const LIMIT_HEADER: &str = "x-ambit-limit";

/// Why the proxy answered a request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalReply {
    /// Routes are attached to the Service but none matched the request.
    NoRouteMatched,
    /// The matched rule has no usable backend (none listed, all weights 0, or unresolved).
    NoBackend,
    /// The chosen backend has no ready endpoints.
    NoEndpoints,
    /// Connecting to the backend failed.
    ConnectFailed,
    /// The backend failed mid-exchange.
    UpstreamError,
    /// A GEP-1742 timeout passed.
    Timeout,
    /// The dialled Service no longer exists.
    ServiceGone,
    /// Too many requests in flight, for this caller or the node.
    Limited(Limit),
    /// The request path has a malformed percent-encoding (see `routes::normalize_path`).
    InvalidPath,
    /// The callee's AuthorizationPolicies refused the caller.
    Forbidden,
}

impl LocalReply {
    pub fn status(self) -> StatusCode {
        match self {
            LocalReply::NoRouteMatched => StatusCode::NOT_FOUND,
            LocalReply::NoBackend => StatusCode::INTERNAL_SERVER_ERROR,
            LocalReply::NoEndpoints | LocalReply::ConnectFailed | LocalReply::ServiceGone | LocalReply::Limited(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            LocalReply::UpstreamError => StatusCode::BAD_GATEWAY,
            LocalReply::Timeout => StatusCode::GATEWAY_TIMEOUT,
            LocalReply::InvalidPath => StatusCode::BAD_REQUEST,
            LocalReply::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    fn message(self) -> &'static str {
        match self {
            LocalReply::NoRouteMatched => "no route matched",
            LocalReply::NoBackend => "no backend for route",
            LocalReply::NoEndpoints => "no healthy upstream",
            LocalReply::ConnectFailed => "upstream connect error",
            LocalReply::UpstreamError => "upstream error",
            LocalReply::Timeout => "upstream request timeout",
            LocalReply::ServiceGone => "service not found",
            LocalReply::Limited(_) => "over the in-flight request limit",
            LocalReply::InvalidPath => "invalid percent-encoding in path",
            LocalReply::Forbidden => "access denied by authorization policy",
        }
    }

    /// The gRPC status code that carries the same meaning.
    fn grpc_status(self) -> u32 {
        match self {
            LocalReply::NoRouteMatched => 12, // UNIMPLEMENTED
            LocalReply::NoBackend | LocalReply::UpstreamError => 13, // INTERNAL
            LocalReply::NoEndpoints | LocalReply::ConnectFailed | LocalReply::ServiceGone | LocalReply::Limited(_) => {
                14 // UNAVAILABLE
            }
            LocalReply::Timeout => 4, // DEADLINE_EXCEEDED
            LocalReply::InvalidPath => 3, // INVALID_ARGUMENT
            LocalReply::Forbidden => 7,   // PERMISSION_DENIED
        }
    }

    /// The response: plain text for HTTP callers, a trailers-only gRPC response (HTTP 200
    /// with `grpc-status`) for gRPC callers.
    pub fn response(self, grpc: bool) -> Response<Body> {
        let mut response = if grpc {
            let mut r = Response::new(body::empty());
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(self.grpc_status()));
            h.insert("grpc-message", HeaderValue::from_static(self.message()));
            r
        } else {
            let mut r = Response::new(body::full(format!("{}\n", self.message())));
            *r.status_mut() = self.status();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        };
        if let LocalReply::Limited(limit) = self {
            response.headers_mut().insert(LIMIT_HEADER, HeaderValue::from_static(limit.label()));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// A redirect answered by the proxy.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, value);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_grpc_forms() {
        let r = LocalReply::NoRouteMatched.response(false);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let g = LocalReply::NoRouteMatched.response(true);
        assert_eq!(g.status(), StatusCode::OK);
        assert_eq!(g.headers()["grpc-status"], "12");
        assert_eq!(LocalReply::Timeout.response(false).status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn limited_says_which_cap() {
        use crate::limits::{Kind, Scope};
        let limit = Limit { scope: Scope::Caller, kind: Kind::Requests };
        let r = LocalReply::Limited(limit).response(false);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[LIMIT_HEADER], "caller_requests");
        let g = LocalReply::Limited(limit).response(true);
        assert_eq!(g.status(), StatusCode::OK);
        assert_eq!(g.headers()["grpc-status"], "14");
        assert_eq!(g.headers()[LIMIT_HEADER], "caller_requests");
    }
}
