//! What one translation derived that the next one reuses when its inputs are the very
//! same objects: the Service index (while the Services and EndpointSlices maps are
//! unchanged), each HTTPRoute's and GRPCRoute's compiled rules (while the route
//! object is the same allocation and the index was reused), and each Service port
//! (while the index was reused and the same compiled rules, in the same order, attach
//! to it).
//!
//! The store shares unchanged objects and maps between states (see
//! [`crate::cluster::Objects`]), so "same allocation" means "unchanged". A reused
//! result is exactly what compiling again would give: compilation reads only the
//! route, the index and the compiled-regex budget. An entry whose compilation asked the
//! budget for nothing is reused regardless of it; one that charged it is reused only
//! when the budget left covers what it needed at its peak (so every charge fits again,
//! and what it kept is charged again); one the budget refused something is not kept.

use std::collections::HashMap;
use std::sync::Arc;

use ambit_proxy_core::config::ServicePort;
use ambit_proxy_core::routes::RegexBudget;

use super::rules::CompiledRoute;
use super::services::ServiceIndex;
use super::Scopes;
use crate::cluster::{ClusterState, ObjectKey, Objects, StoredService, StoredSlice};

/// Carried from one translation to the next (start with `Reuse::default()`).
#[derive(Default)]
pub struct Reuse {
    index: Option<IndexMemo>,
    routes: Memos<(u8, ObjectKey), RouteMemo>,
    ports: Memos<(ObjectKey, u16), PortMemo>,
    /// Routes compiled and reused by the last translation.
    pub last: ReuseCounts,
}

/// How much the last translation compiled and reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReuseCounts {
    pub index_reused: bool,
    pub routes_compiled: usize,
    pub routes_reused: usize,
    /// Service ports built again, and reused.
    pub ports_built: usize,
    pub ports_reused: usize,
}

struct IndexMemo {
    services: Objects<ObjectKey, StoredService>,
    slices: Objects<ObjectKey, StoredSlice>,
    index: Arc<ServiceIndex>,
    /// The problems building it reported.
    problems: Vec<String>,
}

/// A route's compiled rules, with what its compilation depended on.
struct RouteMemo {
    /// The route object (type-erased: only its address is compared, and holding it
    /// keeps that address from being reused by another object).
    route: Arc<dyn std::any::Any + Send + Sync>,
    compiled: Arc<CompiledRoute>,
    /// What it asked of the regex budget (None: nothing).
    budget: Option<Charged>,
}

/// A compilation's use of the regex budget: every charge succeeded.
#[derive(Clone, Copy)]
struct Charged {
    /// The most it had charged at any moment (a failed pattern's charge is refunded).
    peak: usize,
    /// What it charged in the end.
    charged: usize,
}

impl Charged {
    /// Charges it again when compiling again would charge the same: the budget left
    /// covers the peak, so every charge fits again.
    fn replay(self, regexes: &RegexBudget) -> bool {
        regexes.left() >= self.peak && regexes.spend(self.charged)
    }
}

/// A Service port, with the routes it was built from.
struct PortMemo {
    scopes: Option<Scopes>,
    port: Arc<ServicePort>,
}

fn same_scopes(a: &Option<Scopes>, b: &Option<Scopes>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.len() == b.len() && a.iter().zip(b).all(|((sa, ra), (sb, rb))| sa == sb && ra.same(rb)),
        _ => false,
    }
}

/// The last translation's entries (`previous`, taken from as they are reused) and this
/// one's (`current`); an index rebuild clears them.
struct Memos<K, V> {
    previous: HashMap<K, V>,
    current: HashMap<K, V>,
}

impl<K, V> Default for Memos<K, V> {
    fn default() -> Self {
        Self { previous: HashMap::new(), current: HashMap::new() }
    }
}

impl<K, V> Memos<K, V> {
    fn start(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

impl Reuse {
    /// Starts a translation of `state`: the Service index, reused or built (its
    /// problems are appended to `problems` either way).
    pub(super) fn index(&mut self, state: &ClusterState, problems: &mut Vec<String>) -> Arc<ServiceIndex> {
        self.last = ReuseCounts::default();
        self.routes.start();
        self.ports.start();
        if let Some(memo) = self.index.as_ref().filter(|m| m.services.same(&state.services) && m.slices.same(&state.endpoint_slices)) {
            problems.extend(memo.problems.iter().cloned());
            self.last.index_reused = true;
            return memo.index.clone();
        }
        let mut own = Vec::new();
        let index = Arc::new(ServiceIndex::build(state, &mut own));
        problems.extend(own.iter().cloned());
        self.index = Some(IndexMemo {
            services: state.services.clone(),
            slices: state.endpoint_slices.clone(),
            index: index.clone(),
            problems: own,
        });
        // Compiled routes resolved their backends against the old index, and ports hold its endpoints.
        self.routes.previous.clear();
        self.ports.previous.clear();
        index
    }

    /// The compiled rules of the route `object` (kind number `kind`, at `key`): reused
    /// when nothing they depend on changed, compiled by `compile` otherwise.
    pub(super) fn route<R: Send + Sync + 'static>(
        &mut self,
        kind: u8,
        key: &ObjectKey,
        object: &Arc<R>,
        regexes: &RegexBudget,
        compile: impl FnOnce() -> CompiledRoute,
    ) -> Arc<CompiledRoute> {
        let id = (kind, key.clone());
        if let Some(memo) = self.routes.previous.remove(&id) {
            let same = std::ptr::addr_eq(Arc::as_ptr(&memo.route), Arc::as_ptr(object));
            if same && memo.budget.is_none_or(|b| b.replay(regexes)) {
                let compiled = memo.compiled.clone();
                self.routes.current.insert(id, memo);
                self.last.routes_reused += 1;
                return compiled;
            }
        }
        let (left_before, asked, refused) = (regexes.left(), regexes.asked(), regexes.refused());
        regexes.mark_lowest();
        let compiled = Arc::new(compile());
        self.last.routes_compiled += 1;
        // A compilation the budget refused something depends on how much was left: not kept.
        if regexes.refused() == refused {
            let budget = (regexes.asked() != asked)
                .then(|| Charged { peak: left_before - regexes.lowest(), charged: left_before.saturating_sub(regexes.left()) });
            let route: Arc<dyn std::any::Any + Send + Sync> = object.clone();
            self.routes.current.insert(id, RouteMemo { route, compiled: compiled.clone(), budget });
        }
        compiled
    }

    /// The Service port `port` of the Service at `key`, with the routes `scopes`:
    /// reused when the index was reused and the routes are the same allocations, built
    /// by `build` otherwise.
    pub(super) fn service_port(
        &mut self,
        key: &ObjectKey,
        port: u16,
        scopes: Option<Scopes>,
        build: impl FnOnce(Option<Scopes>) -> Arc<ServicePort>,
    ) -> Arc<ServicePort> {
        let id = (key.clone(), port);
        if let Some(memo) = self.ports.previous.remove(&id) {
            if same_scopes(&memo.scopes, &scopes) {
                let reused = memo.port.clone();
                self.ports.current.insert(id, memo);
                self.last.ports_reused += 1;
                return reused;
            }
        }
        let built = build(scopes.clone());
        self.last.ports_built += 1;
        self.ports.current.insert(id, PortMemo { scopes, port: built.clone() });
        built
    }

    /// Ends a translation: entries for what is gone are dropped.
    pub(super) fn finish(&mut self) {
        self.routes.previous.clear();
        self.ports.previous.clear();
    }
}
