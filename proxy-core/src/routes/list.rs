//! The merged, precedence-ordered list of rule matches for one Service port and one
//! caller scope.

use std::sync::Arc;

use super::{PathMatch, RequestView, RouteKind, RouteMatch, Rule};

/// Every (match, rule) pair of the routes that share one parent and scope, sorted by
/// the Gateway API precedence rules, so that the first entry that matches wins.
#[derive(Debug)]
pub struct RouteList {
    kind: RouteKind,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    rule: Arc<Rule>,
    /// Index into `rule.matches`, or None for a rule without matches.
    match_index: Option<usize>,
}

/// The rule that matched a request, and the match that selected it (needed by
/// `ReplacePrefixMatch`).
#[derive(Debug, Clone, Copy)]
pub struct MatchedRule<'a> {
    pub rule: &'a Arc<Rule>,
    pub route_match: Option<&'a RouteMatch>,
}

impl MatchedRule<'_> {
    /// The path match that selected the rule, if it had one.
    pub fn path_match(&self) -> Option<&PathMatch> {
        self.route_match.and_then(|m| m.path.as_ref())
    }
}

impl RouteList {
    /// Merges the rules of all routes of one kind attached to the same parent and
    /// visible to the same callers, and orders their matches by precedence.
    pub fn new(kind: RouteKind, rules: Vec<Arc<Rule>>) -> Self {
        todo!("{kind} {}", rules.len())
    }

    pub fn kind(&self) -> RouteKind {
        self.kind
    }

    /// The distinct rules in precedence order of their best match (for explain/config dump).
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.entries.iter().map(|e| &e.rule)
    }

    /// The highest-precedence match for a request.
    pub fn find(&self, request: &RequestView<'_>) -> Option<MatchedRule<'_>> {
        let _ = (request, &self.entries.first().map(|e| e.match_index));
        todo!()
    }
}
