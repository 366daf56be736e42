//! Caps on open connections and in-flight requests, per caller pod and node-wide, so
//! that one tenant cannot take the whole proxy.
//!
//! A caller is its pod cgroup, from the kernel-attested origin. Each connection takes
//! a [`Permit`] of [`Kind::Connections`] at accept and each HTTP request one of
//! [`Kind::Requests`]; the permit gives its unit back when dropped. Per request this
//! is two atomic adds on counters the connection already holds (`Arc<Budget>` in its
//! context); the caller table is touched once per connection.

mod counter;
mod permit;

pub use counter::{Cap, CappedCounter};
pub use permit::{Budget, Kind, Limit, Permit, Scope};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::identity::CgroupId;

/// The caps. The defaults are documented in the README ("Limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitOptions {
    pub connections_per_caller: Cap,
    pub connections_per_node: Cap,
    pub requests_per_caller: Cap,
    pub requests_per_node: Cap,
}

impl LimitOptions {
    pub const DEFAULT_CONNECTIONS_PER_CALLER: usize = 16_384;
    pub const DEFAULT_CONNECTIONS_PER_NODE: usize = 65_536;
    pub const DEFAULT_REQUESTS_PER_CALLER: usize = 4_096;
    pub const DEFAULT_REQUESTS_PER_NODE: usize = 16_384;
}

impl Default for LimitOptions {
    fn default() -> Self {
        Self {
            connections_per_caller: Cap::new(Self::DEFAULT_CONNECTIONS_PER_CALLER),
            connections_per_node: Cap::new(Self::DEFAULT_CONNECTIONS_PER_NODE),
            requests_per_caller: Cap::new(Self::DEFAULT_REQUESTS_PER_CALLER),
            requests_per_node: Cap::new(Self::DEFAULT_REQUESTS_PER_NODE),
        }
    }
}

/// The node's budget and every caller's.
#[derive(Debug)]
pub struct Budgets {
    options: LimitOptions,
    node: Arc<Budget>,
    /// A caller's budget lives as long as one of its connections does; entries of
    /// callers with none left are dropped as the table grows.
    callers: Mutex<CallerTable>,
}

#[derive(Debug, Default)]
struct CallerTable {
    budgets: HashMap<CgroupId, Weak<Budget>>,
    /// Prune dead entries when the table reaches this size.
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 64;

impl Budgets {
    pub fn new(options: LimitOptions) -> Self {
        let node = Arc::new(Budget::new(options.connections_per_node, options.requests_per_node));
        let callers = Mutex::new(CallerTable { budgets: HashMap::new(), prune_at: MIN_PRUNE_AT });
        Self { options, node, callers }
    }

    /// The budget of the caller in pod cgroup `cgroup` (shared by all its connections).
    pub fn caller(&self, cgroup: CgroupId) -> Arc<Budget> {
        let mut table = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(budget) = table.budgets.get(&cgroup).and_then(Weak::upgrade) {
            return budget;
        }
        let budget = Arc::new(Budget::new(self.options.connections_per_caller, self.options.requests_per_caller));
        table.budgets.insert(cgroup, Arc::downgrade(&budget));
        if table.budgets.len() >= table.prune_at {
            table.budgets.retain(|_, b| b.strong_count() > 0);
            table.prune_at = (table.budgets.len() * 2).max(MIN_PRUNE_AT);
        }
        budget
    }

    /// A connection permit for `caller`, or the cap that refused it.
    pub fn connection(&self, caller: &Arc<Budget>) -> Result<Permit, Limit> {
        Permit::take(Kind::Connections, caller, &self.node)
    }

    /// A request permit for `caller`, or the cap that refused it.
    pub fn request(&self, caller: &Arc<Budget>) -> Result<Permit, Limit> {
        Permit::take(Kind::Requests, caller, &self.node)
    }

    /// The node-wide budget.
    pub fn node(&self) -> &Budget {
        &self.node
    }

    /// Callers with a budget in the table (including ones with no connection left that
    /// were not pruned yet).
    pub fn callers_tracked(&self) -> usize {
        self.callers.lock().unwrap_or_else(|p| p.into_inner()).budgets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(per_caller: usize, per_node: usize) -> LimitOptions {
        LimitOptions {
            connections_per_caller: Cap::new(per_caller),
            connections_per_node: Cap::new(per_node),
            requests_per_caller: Cap::new(per_caller),
            requests_per_node: Cap::new(per_node),
        }
    }

    #[test]
    fn connections_of_one_caller_share_its_budget() {
        let budgets = Budgets::new(options(2, 100));
        let a1 = budgets.caller(CgroupId(1));
        let a2 = budgets.caller(CgroupId(1));
        let _p1 = budgets.connection(&a1).unwrap();
        let _p2 = budgets.connection(&a2).unwrap();
        assert_eq!(budgets.connection(&a1).unwrap_err().label(), "caller_connections");
        let b = budgets.caller(CgroupId(2));
        assert!(budgets.connection(&b).is_ok());
    }

    #[test]
    fn node_cap_applies_across_callers() {
        let budgets = Budgets::new(options(10, 3));
        let callers: Vec<_> = (0..3).map(|i| budgets.caller(CgroupId(i))).collect();
        let held: Vec<_> = callers.iter().map(|c| budgets.connection(c).unwrap()).collect();
        let late = budgets.caller(CgroupId(99));
        assert_eq!(budgets.connection(&late).unwrap_err().label(), "node_connections");
        drop(held);
        assert_eq!(budgets.node().live(Kind::Connections), 0);
        assert!(budgets.connection(&late).is_ok());
    }

    #[test]
    fn callers_without_connections_are_pruned() {
        let budgets = Budgets::new(options(10, 0));
        let kept = budgets.caller(CgroupId(0));
        let _held = budgets.connection(&kept).unwrap();
        for i in 1..10_000 {
            let caller = budgets.caller(CgroupId(i));
            drop(budgets.connection(&caller).unwrap());
        }
        assert!(budgets.callers_tracked() <= 2 * MIN_PRUNE_AT, "{}", budgets.callers_tracked());
        // The live caller kept its budget (and its count) through the pruning.
        assert_eq!(budgets.caller(CgroupId(0)).live(Kind::Connections), 1);
    }
}
