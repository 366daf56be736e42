//! A route list's matches in compact form, for the per-request lookup.
//!
//! A [`RouteMatch`] is a tree of heap objects (path `String`, header and query
//! `Vec`s, their names and values): testing one touches several cache lines, one
//! after the other, and a lookup tries matches until one holds. Here each match is
//! reduced, when the list is built, to a small fixed-size [`MatchTest`] kept inline in
//! the list's entry, whose literals (path, header and query names and values) sit in
//! one [`Arena`] shared by the whole list. Trying a match then reads the entry and
//! perhaps a few bytes of the arena, never the rule. A short list keeps its entries
//! and its arena inline, in the list's own allocation: all of it is then at known
//! offsets from the list, and a cold lookup's loads of it go out together instead
//! of one after the other.
//!
//! Regular expressions (path, header or query values) and extension methods are not
//! copied: a match that has any is marked `full`, and once its compact conditions hold
//! it is confirmed by [`RouteMatch::matches`] on the original. The compact conditions
//! are a subset of the original's, so the outcome is the same either way.

use http::header::SET_COOKIE;
use http::{HeaderMap, Method};
use smallvec::SmallVec;

use super::matching::{header_value_matches, prefix_core, prefix_matches_bytes, query_param_value, unique_by};
use super::{PathMatch, RequestView, RouteMatch, StringMatch};

/// Where a literal sits in the arena's text.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// The path condition.
#[derive(Debug, Clone, Copy)]
enum PathTest {
    /// No path condition (or a regex one, left to the full check).
    Any,
    Exact(Span),
    /// The prefix without its trailing `/` (element-wise prefix test).
    Prefix(Span),
}

/// A header or query parameter that must have an exact value.
#[derive(Debug, Clone, Copy)]
struct Cond {
    name: Span,
    value: Span,
}

/// The methods a match can name without being `full`.
const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::PATCH,
    Method::TRACE,
];

/// One match's conditions, compact. The header conditions are `conds[start..start +
/// headers]` of the arena, the query ones follow them. The default has no conditions.
#[derive(Debug, Clone, Copy)]
pub(super) struct MatchTest {
    path: PathTest,
    /// Index into [`STANDARD_METHODS`].
    method: Option<u8>,
    headers: u16,
    query: u16,
    start: u32,
    /// Some condition is not held here: confirm with the original match.
    full: bool,
}

/// Literal bytes kept inline in a route list (a Service's few short paths and
/// header values); more go to the heap.
const INLINE_TEXT: usize = 64;
/// Exact header and query conditions kept inline.
const INLINE_CONDS: usize = 2;

/// The literals and exact-value conditions of every match of one route list. The
/// text is the UTF-8 of whole `str`s, one after the other.
#[derive(Debug, Default)]
pub(super) struct Arena {
    text: SmallVec<[u8; INLINE_TEXT]>,
    conds: SmallVec<[Cond; INLINE_CONDS]>,
}

/// Builds an [`Arena`] while the list's matches are compiled.
#[derive(Default)]
pub(super) struct ArenaBuilder {
    text: String,
    conds: Vec<Cond>,
}

impl ArenaBuilder {
    fn span(&mut self, s: &str) -> Option<Span> {
        let start = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(s.len()).ok()?;
        start.checked_add(len)?;
        self.text.push_str(s);
        Some(Span { start, len })
    }

    /// The compact form of `m` (None: a match without conditions, i.e. a rule
    /// without matches). A match whose literals do not fit is left wholly to the
    /// full check.
    pub(super) fn add(&mut self, m: Option<&RouteMatch>) -> MatchTest {
        match m {
            None => MatchTest::default(),
            Some(m) => self.compile(m).unwrap_or(MatchTest { full: true, ..MatchTest::default() }),
        }
    }

    fn compile(&mut self, m: &RouteMatch) -> Option<MatchTest> {
        let mut full = false;
        let path = match &m.path {
            None => PathTest::Any,
            Some(PathMatch::Exact(p)) => PathTest::Exact(self.span(p)?),
            Some(PathMatch::Prefix(p)) => PathTest::Prefix(self.span(prefix_core(p))?),
            Some(PathMatch::Regex(_)) => {
                full = true;
                PathTest::Any
            }
        };
        let method = match &m.method {
            None => None,
            Some(method) => {
                let known = STANDARD_METHODS.iter().position(|s| s == method).and_then(|i| u8::try_from(i).ok());
                full |= known.is_none();
                known
            }
        };
        let start = u32::try_from(self.conds.len()).ok()?;
        let headers = unique_by(&m.headers, |a, b| a.name == b.name).map(|h| (h.name.as_str(), &h.value));
        let headers = self.conds_of(headers, &mut full)?;
        let query = unique_by(&m.query, |a, b| a.name == b.name).map(|q| (q.name.as_str(), &q.value));
        let query = self.conds_of(query, &mut full)?;
        Some(MatchTest { path, method, headers, query, start, full })
    }

    /// Adds the exact-value conditions; a regex value sets `full`. Returns how many
    /// were added.
    fn conds_of<'m>(&mut self, conds: impl Iterator<Item = (&'m str, &'m StringMatch)>, full: &mut bool) -> Option<u16> {
        let mut added = 0u16;
        for (name, value) in conds {
            match value {
                StringMatch::Exact(v) => {
                    let cond = Cond { name: self.span(name)?, value: self.span(v)? };
                    self.conds.push(cond);
                    added = added.checked_add(1)?;
                }
                StringMatch::Regex(_) => *full = true,
            }
        }
        Some(added)
    }

    pub(super) fn finish(self) -> Arena {
        Arena { text: SmallVec::from_slice(self.text.as_bytes()), conds: SmallVec::from_slice(&self.conds) }
    }
}

impl Arena {
    /// Whether the arena lives in its list's allocation.
    #[cfg(test)]
    pub(super) fn is_inline(&self) -> bool {
        !self.text.spilled() && !self.conds.spilled()
    }

    fn bytes(&self, span: Span) -> Option<&[u8]> {
        let start = span.start as usize;
        self.text.get(start..start + span.len as usize)
    }

    /// A name or value (whole `str`s were stored, so this only fails on a bad span).
    fn str(&self, span: Span) -> Option<&str> {
        std::str::from_utf8(self.bytes(span)?).ok()
    }

    fn path_holds(&self, test: PathTest, path: &str) -> bool {
        let path = path.as_bytes();
        match test {
            PathTest::Any => true,
            PathTest::Exact(span) => span.len as usize == path.len() && self.bytes(span) == Some(path),
            PathTest::Prefix(span) => {
                span.len as usize <= path.len() && self.bytes(span).is_some_and(|core| prefix_matches_bytes(core, path))
            }
        }
    }

    fn conds(&self, start: u32, len: u16) -> &[Cond] {
        let start = start as usize;
        self.conds.get(start..start + usize::from(len)).unwrap_or_default()
    }

    fn header_holds(&self, cond: &Cond, headers: &HeaderMap) -> bool {
        match (self.str(cond.name), self.bytes(cond.value)) {
            (Some(name), Some(value)) => header_value_matches(headers, name, name == SET_COOKIE, |v| v.as_bytes() == value),
            _ => false,
        }
    }

    fn query_holds(&self, cond: &Cond, query: Option<&str>) -> bool {
        match (self.str(cond.name), self.bytes(cond.value)) {
            (Some(name), Some(value)) => query_param_value(query, name).is_some_and(|v| v.as_bytes() == value),
            _ => false,
        }
    }
}

impl Default for MatchTest {
    fn default() -> Self {
        MatchTest { path: PathTest::Any, method: None, headers: 0, query: 0, start: 0, full: false }
    }
}

impl MatchTest {
    /// Whether the request meets this match's compact conditions (all of them, unless
    /// the match is `full`: then the caller confirms with the original).
    pub(super) fn holds(&self, arena: &Arena, request: &RequestView<'_>) -> bool {
        if !arena.path_holds(self.path, request.path) {
            return false;
        }
        if self.method.is_some_and(|i| STANDARD_METHODS.get(usize::from(i)) != Some(request.method)) {
            return false;
        }
        let headers = arena.conds(self.start, self.headers);
        let query_start = self.start + u32::from(self.headers);
        headers.iter().all(|c| arena.header_holds(c, request.headers))
            && arena.conds(query_start, self.query).iter().all(|c| arena.query_holds(c, request.query))
    }

    /// Whether the original match must confirm a compact success.
    pub(super) fn is_full(&self) -> bool {
        self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::test_support::{header, query, Req};
    use crate::routes::{HeaderMatch, QueryMatch};
    use http::HeaderName;
    use proptest::prelude::*;

    /// The compact test, confirmed by the original when it is not whole: what
    /// [`RouteList::find`](super::super::RouteList::find) does per entry.
    fn compact_says(m: &RouteMatch, req: &Req) -> bool {
        let mut builder = ArenaBuilder::default();
        // Something before, so that spans do not start at 0.
        builder.add(Some(&RouteMatch { headers: vec![header("pad", "x")], ..Default::default() }));
        let test = builder.add(Some(m));
        let arena = builder.finish();
        let view = req.view();
        test.holds(&arena, &view) && (!test.is_full() || m.matches(&view))
    }

    fn regex_header(name: &str, pattern: &str) -> HeaderMatch {
        HeaderMatch { name: HeaderName::from_bytes(name.as_bytes()).unwrap(), value: StringMatch::regex(pattern).unwrap() }
    }

    fn arb_string_match() -> impl Strategy<Value = StringMatch> {
        prop_oneof![
            Just(StringMatch::Exact("1".into())),
            Just(StringMatch::Exact("1,2".into())),
            Just(StringMatch::Exact("".into())),
            Just(StringMatch::regex("[12]").unwrap()),
        ]
    }

    fn arb_match() -> impl Strategy<Value = RouteMatch> {
        let path = prop_oneof![
            Just(None),
            Just(Some(PathMatch::Prefix("/".into()))),
            Just(Some(PathMatch::Prefix("/a/".into()))),
            Just(Some(PathMatch::Prefix("/a/b".into()))),
            Just(Some(PathMatch::Exact("/a/b".into()))),
            Just(Some(PathMatch::Exact("".into()))),
            Just(Some(PathMatch::regex("/a/.*").unwrap())),
        ];
        let method = prop_oneof![
            Just(None),
            Just(Some(Method::GET)),
            Just(Some(Method::POST)),
            Just(Some(Method::from_bytes(b"PURGE").unwrap())),
        ];
        let names = ["h", "H", "set-cookie", "i"];
        let headers = prop::collection::vec((0..names.len(), arb_string_match()), 0..3).prop_map(move |hs| {
            hs.into_iter()
                .map(|(n, value)| HeaderMatch { name: HeaderName::from_bytes(names[n].as_bytes()).unwrap(), value })
                .collect::<Vec<_>>()
        });
        let queries = prop::collection::vec((0..3usize, arb_string_match()), 0..3).prop_map(|qs| {
            qs.into_iter().map(|(n, value)| QueryMatch { name: ["q", "Q", "r s"][n].into(), value }).collect::<Vec<_>>()
        });
        (path, method, headers, queries).prop_map(|(path, method, headers, query)| RouteMatch { path, method, headers, query })
    }

    fn requests() -> Vec<Req> {
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let header_sets: [&[(&str, &str)]; 5] =
            [&[], &[("h", "1")], &[("h", "1"), ("h", "2")], &[("set-cookie", "2"), ("set-cookie", "1")], &[("i", ""), ("h", "2")]];
        let mut out = Vec::new();
        for target in ["/", "*", "", "/a", "/a/", "/a/b", "/a/bc", "/a/b/c", "/x?q=1", "/a/b?Q=1,2&q=", "/a?r%20s=1&q=2", "/a?q"] {
            for headers in header_sets {
                for method in [Method::GET, Method::POST, purge.clone()] {
                    out.push(Req::new(method, target, headers));
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The compact form decides exactly as the original match does.
        #[test]
        fn compact_test_agrees_with_the_original(m in arb_match()) {
            for req in requests() {
                let view = req.view();
                prop_assert_eq!(compact_says(&m, &req), m.matches(&view), "{} {} {:?} {:?}", req.method, req.path, req.query, req.headers);
            }
        }
    }

    #[test]
    fn only_regexes_and_extension_methods_need_the_original() {
        let mut builder = ArenaBuilder::default();
        let exact = RouteMatch {
            method: Some(Method::PATCH),
            headers: vec![header("h", "1")],
            query: vec![query("q", "1")],
            ..crate::routes::test_support::prefix("/a")
        };
        assert!(!builder.add(Some(&exact)).is_full());
        assert!(!builder.add(None).is_full());
        let regex_value = RouteMatch { headers: vec![header("h", "1"), regex_header("i", "x+")], ..Default::default() };
        assert!(builder.add(Some(&regex_value)).is_full());
        let extension = RouteMatch { method: Some(Method::from_bytes(b"PURGE").unwrap()), ..Default::default() };
        assert!(builder.add(Some(&extension)).is_full());
        let regex_path = RouteMatch { path: Some(PathMatch::regex("/a.*").unwrap()), ..Default::default() };
        assert!(builder.add(Some(&regex_path)).is_full());
    }
}
