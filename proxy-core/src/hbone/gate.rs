//! The inbound side's decision for one tunnel stream, shared by streams from other
//! nodes (mutual TLS) and same-node calls handed over in-process: the destination must
//! be a mesh pod on this node, the identity presented for it must be the pod's, the
//! AuthorizationPolicies of the pod (`ProxyConfig::authorization`) must admit the
//! caller's verified identity on the pod port, and so must the [`InboundPolicy`] hook.
//! Admitted streams are registered in [`OpenStreams`] while they last, so that a new
//! configuration closes those it refuses.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;

use super::metrics::{stream_labels, HboneMetrics};
use super::policy::{InboundPolicy, InboundRequest, Tunnel};
use crate::authz::{describe, Closer, Decision, Enforcer, FilterTarget, OpenStreams, Registration, StreamEntry, StreamVerdict};
use crate::config::{ConfigHandle, MeshDestination};
use crate::identity::SpiffeId;
use crate::tls::Refusal;

/// Why a stream was not admitted (and what the wire answer is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The authority is not an `ip:port`.
    #[error("the CONNECT authority is not an ip:port")]
    BadAuthority,
    /// No mesh pod with this address runs on this node.
    #[error("{0} is not a mesh pod on this node")]
    NotHere(SocketAddr),
    /// The identity presented on the connection is not the destination pod's.
    #[error("the connection presented {presented}, not the identity of {destination} ({expected})")]
    WrongIdentity { presented: String, destination: SocketAddr, expected: SpiffeId },
    /// The caller's identity is of another trust domain than the pod's.
    #[error("the caller {0} is of a foreign trust domain")]
    ForeignTrustDomain(SpiffeId),
    /// The policy refused the caller.
    #[error("denied by policy: {0}")]
    Policy(String),
    /// The pod's AuthorizationPolicies refuse every request of the caller on this port.
    #[error("refused by authorization: {}", describe(.0))]
    Authorization(Decision),
}

impl Denial {
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::BadAuthority => StatusCode::BAD_REQUEST,
            Denial::NotHere(_) => StatusCode::NOT_FOUND,
            Denial::WrongIdentity { .. } | Denial::ForeignTrustDomain(_) | Denial::Policy(_) | Denial::Authorization(_) => {
                StatusCode::FORBIDDEN
            },
        }
    }

    pub fn outcome(&self) -> &'static str {
        match self {
            Denial::BadAuthority => "bad_request",
            Denial::NotHere(_) => "not_found",
            Denial::WrongIdentity { .. } | Denial::ForeignTrustDomain(_) | Denial::Policy(_) | Denial::Authorization(_) => "denied",
        }
    }
}

/// What a stream claims: who calls, where to, and which identity was presented to it.
#[derive(Debug, Clone)]
pub struct StreamClaim {
    pub peer: SpiffeId,
    pub destination: Option<SocketAddr>,
    /// The identity this node presented on the connection (None for same-node calls:
    /// no TLS, the destination's identity is used directly).
    pub presented: Option<SpiffeId>,
    pub service: Option<String>,
    pub tunnel: Tunnel,
}

/// The inbound decision maker of one node.
pub struct InboundGate {
    config: ConfigHandle,
    policy: Arc<dyn InboundPolicy>,
    metrics: Arc<HboneMetrics>,
    enforcer: Arc<Enforcer>,
    streams: Arc<OpenStreams>,
}

impl InboundGate {
    /// A gate enforcing `config`'s authorization (counted in `metrics.authz()`), then
    /// `policy`. Inside a Tokio runtime it also starts closing open streams that a newly
    /// published configuration refuses.
    pub fn new(config: ConfigHandle, policy: Arc<dyn InboundPolicy>, metrics: Arc<HboneMetrics>) -> Arc<Self> {
        let enforcer = Enforcer::new(metrics.authz().clone());
        let streams = OpenStreams::new();
        streams.watch(config.clone(), enforcer.clone());
        Arc::new(Self { config, policy, metrics, enforcer, streams })
    }

    pub fn enforcer(&self) -> &Arc<Enforcer> {
        &self.enforcer
    }

    /// The inbound streams open now.
    pub fn open_streams(&self) -> &Arc<OpenStreams> {
        &self.streams
    }

    /// Registers an admitted stream until the registration is dropped; `closer` closes
    /// it when a new configuration refuses it.
    pub fn register(&self, request: &InboundRequest, closer: Closer) -> Registration {
        let entry = StreamEntry { peer: request.peer.clone(), destination: request.destination, filtered: request.filtered };
        self.streams.register(entry, closer)
    }

    /// What the HTTP enforcement of an admitted, filtered stream needs.
    pub fn filter_target(&self, request: &InboundRequest, access_log: Arc<crate::proxy::AccessLog>) -> FilterTarget {
        FilterTarget {
            peer: request.peer.clone(),
            destination: request.destination,
            config: self.config.clone(),
            enforcer: self.enforcer.clone(),
            access_log,
        }
    }

    pub fn metrics(&self) -> &Arc<HboneMetrics> {
        &self.metrics
    }

    /// Admits the stream or says why not (counted in the stream metrics either way;
    /// a wrong identity also as a refusal).
    pub fn admit(&self, claim: &StreamClaim) -> Result<InboundRequest, Denial> {
        let decided = self.decide(claim);
        let (destination_identity, outcome) = match &decided {
            Ok(request) => (Some(&request.destination_identity), "ok"),
            Err(denial) => (None, denial.outcome()),
        };
        match &decided {
            Err(Denial::WrongIdentity { .. }) => self.metrics.refused(Refusal::WrongIdentity),
            Err(Denial::ForeignTrustDomain(_)) => self.metrics.refused(Refusal::ForeignTrustDomain),
            _ => {}
        }
        let labels = stream_labels("inbound", claim.tunnel.label(), &claim.peer, destination_identity, outcome);
        self.metrics.stream(&labels);
        decided
    }

    fn decide(&self, claim: &StreamClaim) -> Result<InboundRequest, Denial> {
        let destination = claim.destination.ok_or(Denial::BadAuthority)?;
        let pod = self.local_pod(destination).ok_or(Denial::NotHere(destination))?;
        // The TLS verifier checks the trust domain too; this also covers same-node calls.
        if claim.peer.trust_domain() != pod.identity.trust_domain() {
            return Err(Denial::ForeignTrustDomain(claim.peer.clone()));
        }
        if let Some(presented) = &claim.presented {
            if *presented != pod.identity {
                return Err(Denial::WrongIdentity {
                    presented: presented.to_string(),
                    destination,
                    expected: pod.identity.clone(),
                });
            }
        }
        let (authz, filtered) = match self.enforcer.stream(&self.config.load().authorization, &claim.peer, destination) {
            StreamVerdict::Open => (Decision::Open, false),
            StreamVerdict::Admitted { decision, http } => (decision, http),
            StreamVerdict::Refused(decision) => return Err(Denial::Authorization(decision)),
        };
        let request = InboundRequest {
            peer: claim.peer.clone(),
            destination,
            destination_identity: pod.identity,
            service: claim.service.clone(),
            tunnel: claim.tunnel,
            authz,
            filtered,
        };
        self.policy.admit(&request).map_err(Denial::Policy)?;
        Ok(request)
    }

    fn local_pod(&self, destination: SocketAddr) -> Option<MeshDestination> {
        let config = self.config.load();
        config.mesh_destination(destination).filter(|pod| pod.on_this_node).cloned()
    }
}
