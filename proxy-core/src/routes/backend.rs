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
    Invalid {
        reason: Arc<str>,
    },
}

impl BackendTarget {
    /// The metrics and access-log label: the Service port as `namespace/name:port`
    /// ("" for an unresolved backendRef, which never gets a request).
    pub fn label(&self) -> Arc<str> {
        match self {
            BackendTarget::Service(s) => format!("{}:{}", s.service, s.port).into(),
            BackendTarget::Invalid { .. } => Arc::from(""),
        }
    }

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

/// The backendRefs of a rule, chosen by weight, with their labels (built once here,
/// not per request).
#[derive(Clone, Debug, Default)]
pub struct BackendSet {
    backends: Vec<WeightedBackend>,
    /// `labels[i]` is `backends[i].target.label()`.
    labels: Vec<Arc<str>>,
    total_weight: u64,
}

impl BackendSet {
    pub fn new(backends: Vec<WeightedBackend>) -> Self {
        let total_weight = backends.iter().map(|b| u64::from(b.weight)).sum();
        let labels = backends.iter().map(|b| b.target.label()).collect();
        Self { backends, labels, total_weight }
    }

    /// [`pick`](Self::pick), with the picked backend's label.
    pub fn pick_labelled(&self) -> Option<(&WeightedBackend, &Arc<str>)> {
        let index = self.pick_index(&mut rand::rng())?;
        Some((&self.backends[index], &self.labels[index]))
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
        self.pick_index(rng).map(|index| &self.backends[index])
    }

    fn pick_index<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        if self.total_weight == 0 {
            return None;
        }
        let mut ticket = rng.random_range(0..self.total_weight);
        for (index, backend) in self.backends.iter().enumerate() {
            let weight = u64::from(backend.weight);
            if ticket < weight {
                return Some(index);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn backend(name: &str, weight: u32) -> WeightedBackend {
        WeightedBackend {
            weight,
            target: BackendTarget::Service(ServiceBackend {
                service: ServiceRef::new("ns", name),
                port: 80,
                protocol: AppProtocol::Http,
                endpoints: Arc::new(EndpointSet::new(vec!["10.0.0.1:8080".parse().unwrap()])),
            }),
            filters: BackendFilters::default(),
        }
    }

    fn name(b: &WeightedBackend) -> String {
        match &b.target {
            BackendTarget::Service(s) => s.service.name.to_string(),
            BackendTarget::Invalid { reason } => format!("invalid: {reason}"),
        }
    }

    #[test]
    fn empty_or_all_zero_weights_pick_nothing() {
        assert!(BackendSet::new(vec![]).pick().is_none());
        assert!(BackendSet::default().pick().is_none());
        let zero = BackendSet::new(vec![backend("a", 0), backend("b", 0)]);
        assert!(zero.pick().is_none());
        assert_eq!(zero.total_weight(), 0);
        assert!(!zero.is_empty());
    }

    #[test]
    fn zero_weight_is_never_chosen() {
        let set = BackendSet::new(vec![backend("a", 0), backend("b", 1), backend("c", 0)]);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            assert_eq!(name(set.pick_with(&mut rng).unwrap()), "b");
        }
        for _ in 0..100 {
            assert_eq!(name(set.pick().unwrap()), "b");
        }
    }

    /// MeshHTTPRouteWeight / MeshTrafficSplit style split: 500 requests per attempt,
    /// each share within 5 percentage points (the conformance tolerance, ±2.4 standard
    /// deviations for 70/30, so about 1.6% of attempts miss; upstream retries up to 10).
    #[test]
    fn weights_70_30_within_conformance_tolerance() {
        let set = BackendSet::new(vec![backend("echo-v1", 70), backend("echo-v2", 30)]);
        let mut rng = StdRng::seed_from_u64(42);
        let passing = (0..100)
            .filter(|_| {
                let v1 = (0..500).filter(|_| name(set.pick_with(&mut rng).unwrap()) == "echo-v1").count();
                (325..=375).contains(&v1)
            })
            .count();
        assert!(passing >= 93, "{passing} of 100 attempts within tolerance");
    }

    #[test]
    fn invalid_backend_is_picked_by_weight_and_has_no_endpoint() {
        let invalid = WeightedBackend {
            weight: 1,
            target: BackendTarget::Invalid { reason: "no such service".into() },
            filters: BackendFilters::default(),
        };
        let set = BackendSet::new(vec![invalid]);
        let picked = set.pick().unwrap();
        assert!(picked.target.pick_endpoint().is_none());
        assert_eq!(backend("a", 1).target.pick_endpoint(), Some("10.0.0.1:8080".parse().unwrap()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Over many picks each backend's share follows weight/total.
        #[test]
        fn distribution_follows_weights(weights in prop::collection::vec(0u32..20, 1..6), seed in any::<u64>()) {
            let set = BackendSet::new(weights.iter().enumerate().map(|(i, w)| backend(&i.to_string(), *w)).collect());
            let total: u32 = weights.iter().sum();
            let mut rng = StdRng::seed_from_u64(seed);
            const N: usize = 20_000;
            let mut counts = vec![0usize; weights.len()];
            for _ in 0..N {
                match set.pick_with(&mut rng) {
                    Some(b) => counts[name(b).parse::<usize>().unwrap()] += 1,
                    None => prop_assert_eq!(total, 0),
                }
            }
            for (i, w) in weights.iter().enumerate() {
                if total == 0 || *w == 0 {
                    prop_assert_eq!(counts[i], 0);
                } else {
                    let expected = f64::from(*w) / f64::from(total);
                    let got = counts[i] as f64 / N as f64;
                    // 6 standard deviations of a binomial share at most 0.5/sqrt(N) ≈ 0.0035.
                    prop_assert!((got - expected).abs() < 0.025, "backend {} got {} expected {}", i, got, expected);
                }
            }
        }
    }
}
