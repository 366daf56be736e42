//! Same-node HTTP calls to a pod whose HTTP rules apply to the caller: the caller's
//! proxy has each request parsed already, so it decides it here (method and normalised
//! path, with the kernel-attested caller identity) and sends it, with the normalised
//! path, over a plain pod connection, instead of serving the stream as HTTP a second
//! time in the inbound gate's filter. The stream itself is still admitted by the gate.

use std::net::SocketAddr;

use http::Request;

use super::body::Body;
use super::upstream::UpstreamError;
use crate::authz::{normalize, request_with_path, Authorization, Enforcer};
use crate::hbone::{Denial, InboundGate};
use crate::identity::SpiffeId;

/// Decides `request` from `peer` to the same-node pod at `endpoint`: unchanged when no
/// HTTP rule can apply to this caller and port, else with its path normalised when
/// allowed; `InvalidPath` or a `Denied` error otherwise.
pub(super) fn decide(
    gate: &InboundGate,
    authorization: &Authorization,
    peer: &SpiffeId,
    endpoint: SocketAddr,
    request: Request<Body>,
) -> Result<Request<Body>, UpstreamError> {
    let Some(policies) = Enforcer::policies(authorization, endpoint) else {
        return Ok(request);
    };
    let view = policies.view(peer, endpoint.port());
    if !view.needs_http() {
        return Ok(request);
    }
    let path = normalize(request.uri().path()).map_err(|_| UpstreamError::InvalidPath(endpoint))?;
    let decision = gate.enforcer().request_in(policies, &view, peer, endpoint, request.method().as_str(), &path);
    if !decision.is_allowed() {
        return Err(UpstreamError::Denied(endpoint, Box::new(Denial::Authorization(decision))));
    }
    Ok(request_with_path(request, &path))
}
