//! What a cap limits, and the RAII permit that holds one unit of a caller's and the
//! node's budget.

use std::sync::Arc;

use super::counter::{Cap, CappedCounter};

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Open proxied connections.
    Connections,
    /// HTTP requests (and gRPC calls) in flight: from the request head until the
    /// response body has been sent or dropped.
    Requests,
}

/// Whose budget is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One caller pod (by its pod cgroup).
    Caller,
    /// The whole node.
    Node,
}

/// The cap that refused: a kind in a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub scope: Scope,
    pub kind: Kind,
}

impl Limit {
    /// The `limit` metric label and `x-ambit-limit` header value.
    pub fn label(self) -> &'static str {
        match (self.scope, self.kind) {
            (Scope::Caller, Kind::Connections) => "caller_connections",
            (Scope::Caller, Kind::Requests) => "caller_requests",
            (Scope::Node, Kind::Connections) => "node_connections",
            (Scope::Node, Kind::Requests) => "node_requests",
        }
    }
}

/// Live connections and requests of one caller, or of the node.
#[derive(Debug)]
pub struct Budget {
    connections: CappedCounter,
    requests: CappedCounter,
}

impl Budget {
    pub fn new(connections: Cap, requests: Cap) -> Self {
        Self { connections: CappedCounter::new(connections), requests: CappedCounter::new(requests) }
    }

    fn counter(&self, kind: Kind) -> &CappedCounter {
        match kind {
            Kind::Connections => &self.connections,
            Kind::Requests => &self.requests,
        }
    }

    /// How many of `kind` are live now.
    pub fn live(&self, kind: Kind) -> usize {
        self.counter(kind).live()
    }
}

/// One unit of `kind` taken from a caller's budget and the node's; given back to both
/// when dropped, on every exit path.
#[derive(Debug)]
pub struct Permit {
    kind: Kind,
    caller: Arc<Budget>,
    node: Arc<Budget>,
}

impl Permit {
    /// Takes one `kind` from `caller` then from `node`; the caller's own cap is
    /// checked first, so a caller over it is told so even when the node is full too.
    pub fn take(kind: Kind, caller: &Arc<Budget>, node: &Arc<Budget>) -> Result<Permit, Limit> {
        if !caller.counter(kind).try_take() {
            return Err(Limit { scope: Scope::Caller, kind });
        }
        if !node.counter(kind).try_take() {
            caller.counter(kind).give_back();
            return Err(Limit { scope: Scope::Node, kind });
        }
        Ok(Permit { kind, caller: caller.clone(), node: node.clone() })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.caller.counter(self.kind).give_back();
        self.node.counter(self.kind).give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(connections: usize, requests: usize) -> Arc<Budget> {
        Arc::new(Budget::new(Cap::new(connections), Cap::new(requests)))
    }

    #[test]
    fn caller_cap_refuses_that_caller_only() {
        let node = budget(10, 10);
        let (a, b) = (budget(2, 0), budget(2, 0));
        let held: Vec<_> = (0..2).map(|_| Permit::take(Kind::Connections, &a, &node).unwrap()).collect();
        let refused = Permit::take(Kind::Connections, &a, &node).unwrap_err();
        assert_eq!(refused, Limit { scope: Scope::Caller, kind: Kind::Connections });
        assert_eq!(refused.label(), "caller_connections");
        assert!(Permit::take(Kind::Connections, &b, &node).is_ok());
        // The refused attempt left nothing behind.
        assert_eq!(a.live(Kind::Connections), 2);
        assert_eq!(node.live(Kind::Connections), 2);
        drop(held);
        assert_eq!(a.live(Kind::Connections), 0);
    }

    #[test]
    fn node_cap_refusal_returns_the_callers_unit() {
        let node = budget(1, 1);
        let (a, b) = (budget(0, 0), budget(0, 0));
        let _held = Permit::take(Kind::Requests, &a, &node).unwrap();
        let refused = Permit::take(Kind::Requests, &b, &node).unwrap_err();
        assert_eq!(refused.label(), "node_requests");
        assert_eq!(b.live(Kind::Requests), 0, "a node refusal must give the caller's unit back");
        assert_eq!(node.live(Kind::Requests), 1);
    }

    #[test]
    fn kinds_are_counted_apart_and_released_on_drop() {
        let node = budget(5, 5);
        let a = budget(1, 1);
        let c = Permit::take(Kind::Connections, &a, &node).unwrap();
        let r = Permit::take(Kind::Requests, &a, &node).unwrap();
        assert!(Permit::take(Kind::Requests, &a, &node).is_err());
        drop(r);
        assert_eq!((a.live(Kind::Connections), a.live(Kind::Requests)), (1, 0));
        drop(c);
        assert_eq!((node.live(Kind::Connections), node.live(Kind::Requests)), (0, 0));
    }

    #[test]
    fn a_permit_dropped_by_unwinding_is_given_back() {
        let node = budget(1, 1);
        let a = budget(1, 1);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _p = Permit::take(Kind::Requests, &a, &node).unwrap();
            panic!("handler failed");
        }));
        assert!(result.is_err());
        assert_eq!(a.live(Kind::Requests), 0);
        assert_eq!(node.live(Kind::Requests), 0);
    }
}
