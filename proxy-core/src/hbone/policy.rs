//! The authorization hook of the inbound side: every tunnel stream (from another node,
//! or a same-node call handed over in-process) is shown to an [`InboundPolicy`] before
//! the pod is dialled, after the AuthorizationPolicies of the pod admitted it (see
//! [`crate::authz`]; enforced by the [`super::InboundGate`] from the configuration).
//! [`AllowAll`] adds nothing to them; tests plug in recorders.

use std::net::SocketAddr;

use crate::identity::SpiffeId;

/// How the caller's identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tunnel {
    /// Mutual TLS from another node's proxy: the peer certificate's SPIFFE ID.
    Hbone,
    /// A caller on this node: the kernel-attested pod's service account.
    Local,
}

impl Tunnel {
    pub fn label(self) -> &'static str {
        match self {
            Tunnel::Hbone => "hbone",
            Tunnel::Local => "local",
        }
    }
}

/// One inbound stream, as the policy sees it.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    /// The verified identity of the caller.
    pub peer: SpiffeId,
    /// The pod address the caller wants to reach (on this node).
    pub destination: SocketAddr,
    /// The destination pod's identity.
    pub destination_identity: SpiffeId,
    /// The Service port the caller dialled, `namespace/name:port`, as it says.
    pub service: Option<String>,
    pub tunnel: Tunnel,
    /// The AuthorizationPolicy decision for the stream (`Open` when none selects the pod).
    pub authz: crate::authz::Decision,
    /// True when the pod's policies have HTTP rules: the stream is parsed as HTTP and
    /// each request decided.
    pub filtered: bool,
}

/// Decides whether an inbound stream may reach its pod.
pub trait InboundPolicy: Send + Sync + 'static {
    /// `Err(reason)` refuses the stream (403 on the wire, or a reset for same-node calls).
    fn admit(&self, request: &InboundRequest) -> Result<(), String>;
}

/// Admits every stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl InboundPolicy for AllowAll {
    fn admit(&self, _request: &InboundRequest) -> Result<(), String> {
        Ok(())
    }
}
