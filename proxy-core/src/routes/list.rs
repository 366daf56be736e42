//! The merged, precedence-ordered list of rule matches for one Service port and one
//! caller scope.

use std::cmp::{Ordering, Reverse};
use std::sync::Arc;

use smallvec::SmallVec;

use super::compact::{Arena, ArenaBuilder, MatchTest};
use super::matching::{grpc_specificity, prefix_core};
use super::{PathMatch, RequestView, RouteKind, RouteMatch, Rule, RuleLabels};

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
    /// In precedence order; each with its match in compact form. A few are kept
    /// inline (most Services' lists are short).
    entries: SmallVec<[Entry; INLINE_ENTRIES]>,
    /// The literals of the entries' compact matches.
    arena: Arena,
    /// Distinct rules, in precedence order of their best match.
    rules: Vec<Arc<Rule>>,
    /// `labels[i]` names `rules[i]`.
    labels: Vec<RuleLabels>,
}

/// Entries kept in the list's own allocation.
const INLINE_ENTRIES: usize = 4;

#[derive(Debug)]
struct Entry {
    /// What a request must meet (read first; the rule is only read once it has won,
    /// or for a match the compact form does not hold whole).
    test: MatchTest,
    rule: Arc<Rule>,
    /// Index into `rule.matches`, or None for a rule without matches.
    match_index: Option<usize>,
    /// Index into `labels` (and `rules`).
    rule_index: usize,
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
            // A RouteList holds HTTPRoute or GRPCRoute rules; the L4 kinds never reach it
            // (they are compiled to `L4Routes`) and would rank like HTTP rules.
            RouteKind::Http | RouteKind::Tls | RouteKind::Tcp => Specificity::Http {
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
            // Alphabetical by the string "{namespace}/{name}".
            fn full(r: &super::RouteRef) -> impl Iterator<Item = u8> + '_ {
                r.namespace.bytes().chain(std::iter::once(b'/')).chain(r.name.bytes())
            }
            let (ra, rb) = (&a.rule.meta.route, &b.rule.meta.route);
            if Arc::ptr_eq(ra, rb) {
                Ordering::Equal
            } else {
                full(ra).cmp(full(rb))
            }
        })
        .then_with(|| a.rule.index.cmp(&b.rule.index))
        .then_with(|| a.match_index.cmp(&b.match_index))
}

/// The rule that matched a request, and which of its matches selected it (needed by
/// `ReplacePrefixMatch`).
///
/// Finding it reads only the route list (its entries and their compact tests): the
/// rule and the match are read by whoever uses them.
#[derive(Debug, Clone, Copy)]
pub struct MatchedRule<'a> {
    pub rule: &'a Arc<Rule>,
    /// Index into `rule.matches`, or None for a rule without matches.
    match_index: Option<usize>,
    /// The rule's metric and log labels.
    pub labels: &'a RuleLabels,
}

impl<'a> MatchedRule<'a> {
    /// The match that selected the rule (None for a rule without matches).
    pub fn route_match(&self) -> Option<&'a RouteMatch> {
        self.match_index.and_then(|i| self.rule.matches.get(i))
    }

    /// The position of [`MatchedRule::route_match`] in the rule's matches.
    pub fn match_index(&self) -> Option<usize> {
        self.match_index
    }

    /// The path match that selected the rule, if it had one.
    pub fn path_match(&self) -> Option<&'a PathMatch> {
        self.route_match().and_then(|m| m.path.as_ref())
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
                indices.into_iter().map(|match_index| Entry { test: MatchTest::default(), rule: rule.clone(), match_index, rule_index: 0 })
            })
            .collect();
        entries.sort_by(|a, b| precedence(kind, a, b));
        let mut arena = ArenaBuilder::default();
        for e in &mut entries {
            e.test = arena.add(e.route_match());
        }
        let mut distinct: Vec<Arc<Rule>> = Vec::new();
        for e in &mut entries {
            e.rule_index = match distinct.iter().position(|r| Arc::ptr_eq(r, &e.rule)) {
                Some(index) => index,
                None => {
                    distinct.push(e.rule.clone());
                    distinct.len() - 1
                }
            };
        }
        let mut labels: Vec<RuleLabels> = Vec::with_capacity(distinct.len());
        for rule in &distinct {
            let same_route = distinct.iter().zip(&labels).find(|(other, _)| other.route() == rule.route());
            let made = RuleLabels::of(rule, same_route.map(|(other, l)| (&**other, l)));
            labels.push(made);
        }
        Self { kind, entries: entries.into_iter().collect(), arena: arena.finish(), rules: distinct, labels }
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
        self.entries.iter().map(|e| self.matched(e))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The highest-precedence match for a request: the first entry whose compact
    /// test holds (confirmed on the original match when the test is not whole).
    pub fn find(&self, request: &RequestView<'_>) -> Option<MatchedRule<'_>> {
        let entry = self.entries.iter().find(|e| {
            e.test.holds(&self.arena, request) && (!e.test.is_full() || e.route_match().is_none_or(|rm| rm.matches(request)))
        })?;
        Some(self.matched(entry))
    }

    fn matched<'a>(&'a self, e: &'a Entry) -> MatchedRule<'a> {
        MatchedRule { rule: &e.rule, match_index: e.match_index, labels: &self.labels[e.rule_index] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::test_support::*;
    use crate::routes::{grpc_method_match, HeaderMatch, StringMatch};
    use http::Method;
    use proptest::prelude::*;

    fn name_of(list: &RouteList, target: &str) -> Option<String> {
        chosen(list, &Req::get(target)).map(|(n, i, _)| format!("{n}#{i}"))
    }

    /// MeshHTTPRouteQueryParamMatching: the route's rules and the 15 cases, with the
    /// backend each rule forwards to.
    #[test]
    fn conformance_query_param_matching() {
        let q = |name: &str, value: &str| query(name, value);
        let rules = vec![
            http_rule("qp", 0, vec![RouteMatch { query: vec![q("animal", "whale")], ..Default::default() }]),
            http_rule("qp", 1, vec![RouteMatch { query: vec![q("animal", "dolphin")], ..Default::default() }]),
            http_rule("qp", 2, vec![RouteMatch { query: vec![q("animal", "whale")], ..prefix("/path1") }]),
            http_rule(
                "qp",
                3,
                vec![RouteMatch {
                    headers: vec![header("version", "one")],
                    query: vec![q("animal", "whale")],
                    ..Default::default()
                }],
            ),
            http_rule(
                "qp",
                4,
                vec![
                    RouteMatch { query: vec![q("animal", "shark")], ..prefix("/path3") },
                    RouteMatch {
                        headers: vec![header("version", "three")],
                        query: vec![q("animal", "kraken")],
                        ..prefix("/path4")
                    },
                ],
            ),
            http_rule("qp", 5, vec![prefix("/path5")]),
            http_rule("qp", 6, vec![RouteMatch { query: vec![q("animal", "hydra")], ..Default::default() }]),
        ];
        let backend = ["echo-v1", "echo-v2", "echo-v1", "echo-v2", "echo-v1", "echo-v1", "echo-v2"];
        let list = RouteList::new(RouteKind::Http, rules);
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            ("/?animal=whale", &[], Some("echo-v1")),
            ("/?animal=dolphin", &[], Some("echo-v2")),
            ("/?animal=whale&otherparam=irrelevant", &[], Some("echo-v1")),
            ("/?animal=dolphin&color=yellow", &[], Some("echo-v2")),
            ("/?color=blue", &[], None),
            ("/?animal=dog", &[], None),
            ("/?animal=whaledolphin", &[], None),
            ("/", &[], None),
            ("/path1?animal=whale", &[], Some("echo-v1")),
            ("/?animal=whale", &[("version", "one")], Some("echo-v2")),
            ("/path3?animal=shark", &[], Some("echo-v1")),
            ("/path4?animal=kraken", &[("version", "three")], Some("echo-v1")),
            ("/?animal=shark", &[], None),
            ("/path4?animal=kraken", &[], None),
            ("/path5?animal=hydra", &[], Some("echo-v1")),
        ];
        for (i, (target, headers, expected)) in cases.iter().enumerate() {
            let req = Req::new(Method::GET, target, headers);
            let got = chosen(&list, &req).map(|(_, rule, _)| backend[rule]);
            assert_eq!(got, *expected, "case {i}: {target} {headers:?}");
        }
        // Case 8 is won by the /path1 rule (rule 2), not the path-less rule 0.
        assert_eq!(name_of(&list, "/path1?animal=whale").as_deref(), Some("qp#2"));
        // Case 14: the /path5 prefix beats the query-only rule 6.
        assert_eq!(name_of(&list, "/path5?animal=hydra").as_deref(), Some("qp#5"));
    }

    #[test]
    fn path_precedence_exact_then_longest_prefix_then_regex_then_any() {
        let regex = RouteMatch { path: Some(PathMatch::regex("/a.*").unwrap()), ..Default::default() };
        let rules = vec![
            http_rule("any", 0, vec![]),
            http_rule("root", 0, vec![prefix("/")]),
            http_rule("regex", 0, vec![regex]),
            http_rule("short", 0, vec![prefix("/a")]),
            http_rule("long", 0, vec![prefix("/a/b")]),
            http_rule("exact", 0, vec![exact_path("/a/b/c")]),
        ];
        let list = RouteList::new(RouteKind::Http, rules);
        assert_eq!(name_of(&list, "/a/b/c").as_deref(), Some("exact#0"));
        assert_eq!(name_of(&list, "/a/b/c/d").as_deref(), Some("long#0"));
        assert_eq!(name_of(&list, "/a/b").as_deref(), Some("long#0"));
        assert_eq!(name_of(&list, "/a/bc").as_deref(), Some("short#0"));
        assert_eq!(name_of(&list, "/ab").as_deref(), Some("regex#0"));
        // "any" (no matches) and "root" (PathPrefix /) are the same match; same
        // creation time and namespace, so the name decides.
        assert_eq!(name_of(&list, "/x").as_deref(), Some("any#0"));
        let order: Vec<_> = list.rules().map(|r| r.route().name.to_string()).collect();
        assert_eq!(order, ["exact", "long", "short", "regex", "any", "root"]);
    }

    #[test]
    fn method_then_headers_then_query() {
        let rules = vec![
            http_rule("query2", 0, vec![RouteMatch { query: vec![query("a", "1"), query("b", "2")], ..prefix("/p") }]),
            http_rule("header1", 0, vec![RouteMatch { headers: vec![header("h", "1")], ..prefix("/p") }]),
            http_rule(
                "header2",
                0,
                vec![RouteMatch { headers: vec![header("h", "1"), header("i", "2")], ..prefix("/p") }],
            ),
            http_rule("method", 0, vec![RouteMatch { method: Some(Method::GET), ..prefix("/p") }]),
            http_rule("longer", 0, vec![prefix("/p/q")]),
        ];
        let list = RouteList::new(RouteKind::Http, rules);
        let pick = |target: &str, headers: &[(&str, &str)]| {
            chosen(&list, &Req::new(Method::GET, target, headers)).map(|(n, _, _)| n)
        };
        let all = [("h", "1"), ("i", "2")];
        assert_eq!(pick("/p/q?a=1&b=2", &all).as_deref(), Some("longer"), "path first");
        assert_eq!(pick("/p?a=1&b=2", &all).as_deref(), Some("method"));
        let post = chosen(&list, &Req::new(Method::POST, "/p?a=1&b=2", &all)).map(|(n, _, _)| n);
        assert_eq!(post.as_deref(), Some("header2"));
        let post1 = chosen(&list, &Req::new(Method::POST, "/p?a=1&b=2", &[("h", "1")])).map(|(n, _, _)| n);
        assert_eq!(post1.as_deref(), Some("header1"), "one header beats two query params");
        let post0 = chosen(&list, &Req::new(Method::POST, "/p?a=1&b=2", &[])).map(|(n, _, _)| n);
        assert_eq!(post0.as_deref(), Some("query2"));
        assert_eq!(chosen(&list, &Req::new(Method::POST, "/p", &[])), None);
    }

    #[test]
    fn duplicate_header_names_count_once_for_precedence() {
        let rules = vec![
            http_rule("dup", 0, vec![RouteMatch { headers: vec![header("h", "1"), header("H", "2")], ..prefix("/") }]),
            http_rule("two", 0, vec![RouteMatch { headers: vec![header("h", "1"), header("j", "1")], ..prefix("/") }]),
        ];
        let list = RouteList::new(RouteKind::Http, rules);
        let req = Req::new(Method::GET, "/", &[("h", "1"), ("j", "1")]);
        assert_eq!(chosen(&list, &req).map(|c| c.0).as_deref(), Some("two"));
        let req = Req::new(Method::GET, "/", &[("h", "1")]);
        assert_eq!(chosen(&list, &req).map(|c| c.0).as_deref(), Some("dup"), "the second H entry is ignored");
    }

    #[test]
    fn trailing_slash_prefix_ties_with_plain_prefix() {
        let older = rule(RouteKind::Http, "ns", "z-older", Some(1), 0, vec![prefix("/foo")]);
        let newer = rule(RouteKind::Http, "ns", "a-newer", Some(2), 0, vec![prefix("/foo/")]);
        let list = RouteList::new(RouteKind::Http, vec![newer, older]);
        assert_eq!(name_of(&list, "/foo/x").as_deref(), Some("z-older#0"));
    }

    #[test]
    fn route_ties_oldest_then_alphabetical_then_rule_then_match_order() {
        let m = || vec![prefix("/x"), prefix("/x")];
        let list = RouteList::new(
            RouteKind::Http,
            vec![
                rule(RouteKind::Http, "b", "r", Some(5), 0, m()),
                rule(RouteKind::Http, "a", "z", None, 0, m()),
                rule(RouteKind::Http, "b", "q", Some(5), 1, m()),
                rule(RouteKind::Http, "b", "q", Some(5), 0, m()),
                rule(RouteKind::Http, "c", "c", Some(3), 2, m()),
            ],
        );
        let order: Vec<_> = list
            .matches()
            .map(|m| {
                let r = m.rule.route();
                let mi = m.route_match().map(|rm| m.rule.matches.iter().position(|x| std::ptr::eq(x, rm)).unwrap());
                format!("{}/{}#{}.{}", r.namespace, r.name, m.rule.index, mi.unwrap())
            })
            .collect();
        assert_eq!(
            order,
            [
                "c/c#2.0", "c/c#2.1", "b/q#0.0", "b/q#0.1", "b/q#1.0", "b/q#1.1", "b/r#0.0", "b/r#0.1", "a/z#0.0",
                "a/z#0.1"
            ]
        );
        assert_eq!(list.rules().count(), 5);
        assert_eq!(name_of(&list, "/x").as_deref(), Some("c#2"));
    }

    #[test]
    fn alphabetical_uses_namespace_then_name() {
        // "a-b/c" < "a/z" as strings ('-' < '/'), but by (namespace, name) "a" < "a-b".
        let list = RouteList::new(
            RouteKind::Http,
            vec![
                rule(RouteKind::Http, "a-b", "c", Some(0), 0, vec![]),
                rule(RouteKind::Http, "a", "z", Some(0), 0, vec![]),
            ],
        );
        let first = list.rules().next().unwrap().route().clone();
        // The spec orders by the string "{namespace}/{name}".
        assert_eq!(&*first.namespace, "a-b");
    }

    /// Two HTTPRoutes of two rules (a header and path prefix match, an exact path):
    /// the shape of bench scenario 7's lists, held in the list's own allocation.
    #[test]
    fn a_short_list_is_held_inline() {
        let api = |r: usize| RouteMatch { headers: vec![header("x-tenant", &format!("t{r}"))], ..prefix(&format!("/r{r}/api")) };
        let rules: Vec<_> = (0..2)
            .flat_map(|r| {
                let name = format!("route-{r}");
                [http_rule(&name, 0, vec![api(r)]), http_rule(&name, 1, vec![exact_path(&format!("/r{r}/health"))])]
            })
            .collect();
        let list = RouteList::new(RouteKind::Http, rules);
        assert!(!list.entries.spilled() && list.arena.is_inline());
        assert_eq!(name_of(&list, "/r1/health").as_deref(), Some("route-1#1"));
        let req = Req::new(Method::GET, "/r1/api/x", &[("x-tenant", "t1")]);
        assert_eq!(chosen(&list, &req).map(|c| c.0).as_deref(), Some("route-1"));
        let long: Vec<_> = (0..5).map(|i| http_rule("long", i, vec![exact_path(&format!("/{i}"))])).collect();
        let list = RouteList::new(RouteKind::Http, long);
        assert!(list.entries.spilled());
        assert_eq!(name_of(&list, "/4").as_deref(), Some("long#4"));
    }

    #[test]
    fn empty_list_matches_nothing() {
        let list = RouteList::new(RouteKind::Http, vec![]);
        assert!(list.is_empty());
        assert_eq!(chosen(&list, &Req::get("/")), None);
        assert_eq!(list.kind(), RouteKind::Http);
    }

    #[test]
    fn rule_without_matches_matches_everything_with_no_route_match() {
        let list = RouteList::new(RouteKind::Http, vec![http_rule("all", 0, vec![])]);
        let req = Req::new(Method::PATCH, "/deep/path?x=1", &[("a", "b")]);
        let m = list.find(&req.view()).unwrap();
        assert!(m.route_match().is_none());
        assert!(m.match_index().is_none());
        assert!(m.path_match().is_none());
    }

    #[test]
    fn grpc_precedence_service_then_method_then_headers() {
        let g = |svc: Option<&str>, method: Option<&str>, headers: Vec<HeaderMatch>| RouteMatch {
            path: Some(grpc_method_match(svc, method, false, &crate::routes::RegexBudget::unlimited()).unwrap()),
            headers,
            ..Default::default()
        };
        let grule = |name: &str, m: RouteMatch| rule(RouteKind::Grpc, "ns", name, Some(0), 0, vec![m]);
        let list = RouteList::new(
            RouteKind::Grpc,
            vec![
                grule("method-only", g(None, Some("Echo"), vec![header("h", "1"), header("i", "1")])),
                grule("svc-only", g(Some("pkg.Svc"), None, vec![])),
                grule("svc-and-method", g(Some("pkg.Svc"), Some("Echo"), vec![])),
                grule("svc-and-method-hdr", g(Some("pkg.Svc"), Some("Echo"), vec![header("h", "1")])),
                grule("longer-svc", g(Some("pkg.Svc2"), None, vec![])),
            ],
        );
        let pick =
            |path: &str, headers: &[(&str, &str)]| chosen(&list, &Req::new(Method::POST, path, headers)).map(|c| c.0);
        assert_eq!(pick("/pkg.Svc/Echo", &[("h", "1"), ("i", "1")]).as_deref(), Some("svc-and-method-hdr"));
        assert_eq!(pick("/pkg.Svc/Echo", &[]).as_deref(), Some("svc-and-method"));
        assert_eq!(pick("/pkg.Svc/Other", &[]).as_deref(), Some("svc-only"));
        assert_eq!(pick("/pkg.Svc2/Echo", &[]).as_deref(), Some("longer-svc"), "more service characters win");
        assert_eq!(pick("/other.Svc/Echo", &[("h", "1"), ("i", "1")]).as_deref(), Some("method-only"));
        assert_eq!(pick("/other.Svc/Echo", &[]), None);
    }

    #[test]
    fn grpc_regex_match_ranks_by_pattern_characters() {
        let m = |svc: &str| RouteMatch {
            path: Some(grpc_method_match(Some(svc), None, true, &crate::routes::RegexBudget::unlimited()).unwrap()),
            ..Default::default()
        };
        let list = RouteList::new(
            RouteKind::Grpc,
            vec![
                rule(RouteKind::Grpc, "ns", "short", Some(0), 0, vec![m("p.*")]),
                rule(RouteKind::Grpc, "ns", "long", Some(0), 0, vec![m(r"pkg\..*")]),
            ],
        );
        assert_eq!(chosen(&list, &Req::new(Method::POST, "/pkg.S/M", &[])).map(|c| c.0).as_deref(), Some("long"));
        assert_eq!(chosen(&list, &Req::new(Method::POST, "/px/M", &[])).map(|c| c.0).as_deref(), Some("short"));
    }

    // ---- property tests ----

    fn arb_match() -> impl Strategy<Value = RouteMatch> {
        let path = prop_oneof![
            Just(None),
            Just(Some(PathMatch::Prefix("/".into()))),
            Just(Some(PathMatch::Prefix("/a".into()))),
            Just(Some(PathMatch::Prefix("/a/".into()))),
            Just(Some(PathMatch::Prefix("/a/b".into()))),
            Just(Some(PathMatch::Exact("/a/b".into()))),
            Just(Some(PathMatch::Exact("/a".into()))),
            Just(Some(PathMatch::regex("/a/.*").unwrap())),
            Just(Some(PathMatch::regex("/.*b").unwrap())),
        ];
        let method = prop_oneof![Just(None), Just(Some(Method::GET)), Just(Some(Method::POST))];
        let headers = prop::collection::vec((0..2usize, 0..2usize), 0..3)
            .prop_map(|hs| hs.into_iter().map(|(n, v)| header(["h", "i"][n], ["1", "2"][v])).collect::<Vec<_>>());
        let queries = prop::collection::vec((0..2usize, 0..2usize), 0..3)
            .prop_map(|qs| qs.into_iter().map(|(n, v)| query(["q", "r"][n], ["1", "2"][v])).collect::<Vec<_>>());
        (path, method, headers, queries).prop_map(|(path, method, headers, query)| RouteMatch {
            path,
            method,
            headers,
            query,
        })
    }

    /// Rules with unique (route, index); routes "r0".."r2" in two namespaces, each route
    /// with one creation time.
    fn arb_rules() -> impl Strategy<Value = Vec<Arc<Rule>>> {
        let created = prop::collection::vec(prop_oneof![Just(None), (0i64..2).prop_map(Some)], 6);
        let rules = prop::collection::vec(prop::collection::vec(arb_match(), 0..3), 1..10);
        (created, rules).prop_map(|(created, rules)| {
            rules
                .into_iter()
                .enumerate()
                .map(|(k, matches)| {
                    let route = k % 6;
                    let ns = ["x", "y"][route / 3];
                    rule(RouteKind::Http, ns, &format!("r{}", route % 3), created[route], k / 6, matches)
                })
                .collect()
        })
    }

    fn requests() -> Vec<Req> {
        let mut out = Vec::new();
        for path in ["/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/x/b"] {
            for q in ["", "?q=1", "?q=2&r=1", "?r=2&q=1"] {
                for h in [&[][..], &[("h", "1")][..], &[("h", "2"), ("i", "1")][..]] {
                    for method in [Method::GET, Method::POST] {
                        out.push(Req::new(method, &format!("{path}{q}"), h));
                    }
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The order in which routes and rules are given never changes the outcome.
        #[test]
        fn find_is_independent_of_input_order(
            (rules, shuffled) in arb_rules().prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle()))
        ) {
            let a = RouteList::new(RouteKind::Http, rules);
            let b = RouteList::new(RouteKind::Http, shuffled);
            for req in requests() {
                prop_assert_eq!(chosen(&a, &req), chosen(&b, &req), "{} {}?{:?}", req.method, req.path, req.query);
            }
        }

        /// The chosen entry matches, and no entry that matches the request is ranked
        /// strictly higher by the precedence order (a strict total order).
        #[test]
        fn winner_is_the_best_matching_entry(rules in arb_rules()) {
            let list = RouteList::new(RouteKind::Http, rules);
            for w in list.entries.windows(2) {
                prop_assert_eq!(precedence(list.kind, &w[0], &w[1]), Ordering::Less);
                prop_assert_eq!(precedence(list.kind, &w[1], &w[0]), Ordering::Greater);
            }
            for req in requests() {
                let view = req.view();
                let matching: Vec<&Entry> =
                    list.entries.iter().filter(|e| e.route_match().is_none_or(|m| m.matches(&view))).collect();
                match list.find(&view) {
                    None => prop_assert!(matching.is_empty()),
                    Some(found) => {
                        let best = matching.iter().copied().min_by(|a, b| precedence(list.kind, a, b)).unwrap();
                        prop_assert!(Arc::ptr_eq(found.rule, &best.rule));
                        prop_assert_eq!(found.route_match().map(|m| m as *const _), best.route_match().map(|m| m as *const _));
                    }
                }
            }
        }
    }

    #[test]
    fn string_match_regex_in_header_counts_as_a_header_match() {
        let re = HeaderMatch { name: http::HeaderName::from_static("h"), value: StringMatch::regex("[0-9]+").unwrap() };
        let list = RouteList::new(
            RouteKind::Http,
            vec![
                http_rule("plain", 0, vec![prefix("/")]),
                http_rule("re", 0, vec![RouteMatch { headers: vec![re], ..prefix("/") }]),
            ],
        );
        assert_eq!(chosen(&list, &Req::new(Method::GET, "/", &[("h", "42")])).map(|c| c.0).as_deref(), Some("re"));
        assert_eq!(chosen(&list, &Req::new(Method::GET, "/", &[("h", "x")])).map(|c| c.0).as_deref(), Some("plain"));
    }
}
