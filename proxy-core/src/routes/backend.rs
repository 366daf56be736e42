//! Weighted backendRefs and the endpoints behind them.

use std::net::SocketAddr;
use std::sync::Arc;

use super::HeaderModifier;
use crate::config::{AppProtocol, EndpointSet, ServiceRef};

/// A backendRef that resolved to a Service port.
#[derive(Clone, Debug)]
pub struct ServiceBackend {
    pub service: ServiceRef,
    pub port: u16,
    /// The protocol declared on the backend's Service port.
    pub protocol: AppProtocol,
    pub endpoints: Arc<EndpointSet>,
}

/// Where a backendRef points.
#[derive(Clone, Debug)]
pub enum BackendTarget {
    Service(ServiceBackend),
    /// The backendRef could not be resolved (unknown Service or port, unsupported kind):
    /// requests sent to it get 500, and the route reports `ResolvedRefs=False`.
    Invalid { reason: Arc<str> },
}

impl BackendTarget {
    /// A ready endpoint, round robin.
    pub fn pick_endpoint(&self) -> Option<SocketAddr> {
        match self {
            BackendTarget::Service(s) => s.endpoints.pick(),
            BackendTarget::Invalid { .. } => None,
        }
    }
}

/// Filters set on an individual backendRef; they apply only to requests sent to it.
#[derive(Clone, Debug, Default)]
pub struct BackendFilters {
    pub request_headers: Option<HeaderModifier>,
    pub response_headers: Option<HeaderModifier>,
}

#[derive(Clone, Debug)]
pub struct WeightedBackend {
    /// Relative weight; 0 means never chosen.
    pub weight: u32,
    pub target: BackendTarget,
    pub filters: BackendFilters,
}

/// The backendRefs of a rule, chosen by weight.
#[derive(Clone, Debug, Default)]
pub struct BackendSet {
    backends: Vec<WeightedBackend>,
    total_weight: u64,
}

impl BackendSet {
    pub fn new(backends: Vec<WeightedBackend>) -> Self {
        let total_weight = backends.iter().map(|b| u64::from(b.weight)).sum();
        Self { backends, total_weight }
    }

    pub fn backends(&self) -> &[WeightedBackend] {
        &self.backends
    }

    /// Picks a backend with probability weight/total. None when there are no backends
    /// or every weight is 0 (the request then gets 500).
    pub fn pick(&self) -> Option<&WeightedBackend> {
        self.pick_with(&mut rand::rng())
    }

    /// [`pick`](Self::pick) with a caller-supplied random source (for deterministic tests).
    pub fn pick_with<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Option<&WeightedBackend> {
        if self.total_weight == 0 {
            return None;
        }
        let mut ticket = rng.random_range(0..self.total_weight);
        for backend in &self.backends {
            let weight = u64::from(backend.weight);
            if ticket < weight {
                return Some(backend);
            }
            ticket -= weight;
        }
        // The tickets cover exactly the sum of the weights.
        None
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// Sum of all weights; 0 means every request gets 500.
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }
}
