//! What one translation derived that the next one reuses when its inputs are the very
//! same objects: the Service index (while the Services and EndpointSlices maps are
//! unchanged), and each HTTPRoute's and GRPCRoute's compiled rules (while the route
//! object is the same allocation and the index was reused).
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

use ambit_proxy_core::routes::RegexBudget;

use super::rules::CompiledRoute;
use super::services::ServiceIndex;
use crate::cluster::{ClusterState, ObjectKey, Objects, StoredService, StoredSlice};

/// Carried from one translation to the next (start with `Reuse::default()`).
#[derive(Default)]
pub struct Reuse {
    index: Option<IndexMemo>,
    routes: RouteMemos,
    /// Routes compiled and reused by the last translation.
    pub last: ReuseCounts,
}

/// How much the last translation compiled and reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReuseCounts {
    pub index_reused: bool,
    pub routes_compiled: usize,
    pub routes_reused: usize,
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

/// The compiled routes by (kind, key); an index rebuild clears them.
#[derive(Default)]
struct RouteMemos {
    previous: HashMap<(u8, ObjectKey), RouteMemo>,
    current: HashMap<(u8, ObjectKey), RouteMemo>,
}

impl Reuse {
    /// Starts a translation of `state`: the Service index, reused or built (its
    /// problems are appended to `problems` either way).
    pub(super) fn index(&mut self, state: &ClusterState, problems: &mut Vec<String>) -> Arc<ServiceIndex> {
        self.last = ReuseCounts::default();
        self.routes.previous = std::mem::take(&mut self.routes.current);
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
        // Compiled routes resolved their backends against the old index.
        self.routes.previous.clear();
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

    /// Ends a translation: memos of routes that are gone are dropped.
    pub(super) fn finish(&mut self) {
        self.routes.previous.clear();
    }
}
