//! The merged, precedence-ordered list of rule matches for one Service port and one
//! caller scope.

use std::cmp::{Ordering, Reverse};
use std::sync::Arc;

use super::matching::{grpc_specificity, prefix_core};
use super::{PathMatch, RequestView, RouteKind, RouteMatch, Rule};

/// Every (match, rule) pair of the routes that share one parent and scope, sorted by
/// the Gateway API precedence rules, so that the first entry that matches wins.
///
/// HTTPRoute precedence (HTTPRouteRule.matches), highest first:
/// 1. `Exact` path;
/// 2. `PathPrefix` other than `/`, more characters first (a trailing `/` is not
///    counted: `/foo/` and `/foo` match the same requests);
/// 3. `RegularExpression` path (implementation-specific: after every real prefix,
///    longer pattern first);
/// 4. `PathPrefix /`, no path, or a rule without matches (all the same: the spec's
///    default match);
///
/// then a method match, then more header matches, then more query parameter matches.
///
/// GRPCRoute precedence (GRPCRouteRule.matches): more characters in the matching
/// service, then in the matching method, then more header matches.
///
/// Remaining ties, for both kinds: the oldest route (unknown creation time last), then
/// route `namespace/name` alphabetically, then rule order, then match order.
#[derive(Debug)]
pub struct RouteList {
    kind: RouteKind,
    entries: Vec<Entry>,
    /// Distinct rules, in precedence order of their best match.
    rules: Vec<Arc<Rule>>,
}

#[derive(Debug)]
struct Entry {
    rule: Arc<Rule>,
    /// Index into `rule.matches`, or None for a rule without matches.
    match_index: Option<usize>,
}

impl Entry {
    fn route_match(&self) -> Option<&RouteMatch> {
        self.match_index.map(|i| &self.rule.matches[i])
    }
}

/// How specific a path match is, for HTTPRoute precedence (greater wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PathRank {
    /// `PathPrefix /`, no path, no matches.
    Any,
    /// Pattern length.
    Regex(usize),
    /// Characters of the prefix without its trailing `/`.
    Prefix(usize),
    Exact(usize),
}

impl PathRank {
    fn of(path: Option<&PathMatch>) -> Self {
        match path {
            None => PathRank::Any,
            Some(PathMatch::Exact(p)) => PathRank::Exact(p.len()),
            Some(PathMatch::Prefix(p)) => match prefix_core(p).len() {
                0 => PathRank::Any,
                n => PathRank::Prefix(n),
            },
            Some(PathMatch::Regex(re)) => PathRank::Regex(super::matching::unanchored(re).len()),
        }
    }
}

/// The match-level part of the precedence key (greater wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Http { path: PathRank, method: bool, headers: usize, query: usize },
    Grpc { service: usize, method: usize, headers: usize },
}

impl Specificity {
    fn of(kind: RouteKind, m: Option<&RouteMatch>) -> Self {
        let headers = m.map_or(0, |m| m.effective_headers().count());
        match kind {
            RouteKind::Http => Specificity::Http {
                path: PathRank::of(m.and_then(|m| m.path.as_ref())),
                method: m.is_some_and(|m| m.method.is_some()),
                headers,
                query: m.map_or(0, |m| m.effective_query().count()),
            },
            RouteKind::Grpc => {
                let (service, method) = grpc_specificity(m.and_then(|m| m.path.as_ref()));
                Specificity::Grpc { service, method, headers }
            }
        }
    }
}

/// Orders entries so that the entry that must win comes first.
fn precedence(kind: RouteKind, a: &Entry, b: &Entry) -> Ordering {
    let key = |e: &Entry| {
        let meta = &e.rule.meta;
        (
            Reverse(Specificity::of(kind, e.route_match())),
            // Oldest first; unknown creation time last.
            meta.created.is_none(),
            meta.created,
        )
    };
    key(a)
        .cmp(&key(b))
        .then_with(|| {
            let (ra, rb) = (&a.rule.meta.route, &b.rule.meta.route);
            (&*ra.namespace, &*ra.name).cmp(&(&*rb.namespace, &*rb.name))
        })
        .then_with(|| a.rule.index.cmp(&b.rule.index))
        .then_with(|| a.match_index.cmp(&b.match_index))
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
    /// visible to the same callers, and orders their matches by precedence. The result
    /// does not depend on the order of `rules`.
    pub fn new(kind: RouteKind, rules: Vec<Arc<Rule>>) -> Self {
        let mut entries: Vec<Entry> = rules
            .iter()
            .flat_map(|rule| {
                let indices: Vec<Option<usize>> =
                    if rule.matches.is_empty() { vec![None] } else { (0..rule.matches.len()).map(Some).collect() };
                indices.into_iter().map(|match_index| Entry { rule: rule.clone(), match_index })
            })
            .collect();
        entries.sort_by(|a, b| precedence(kind, a, b));
        let mut distinct: Vec<Arc<Rule>> = Vec::new();
        for e in &entries {
            if !distinct.iter().any(|r| Arc::ptr_eq(r, &e.rule)) {
                distinct.push(e.rule.clone());
            }
        }
        Self { kind, entries, rules: distinct }
    }

    pub fn kind(&self) -> RouteKind {
        self.kind
    }

    /// The distinct rules in precedence order of their best match (for explain/config dump).
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.rules.iter()
    }

    /// Every (rule, match) pair in precedence order; the match is None for a rule
    /// without matches.
    pub fn matches(&self) -> impl Iterator<Item = MatchedRule<'_>> {
        self.entries.iter().map(|e| MatchedRule { rule: &e.rule, route_match: e.route_match() })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The highest-precedence match for a request.
    pub fn find(&self, request: &RequestView<'_>) -> Option<MatchedRule<'_>> {
        self.matches().find(|m| m.route_match.is_none_or(|rm| rm.matches(request)))
    }
}
