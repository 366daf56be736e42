//! The path conditions of a route list's entries, in one contiguous table: a request
//! is checked against every entry's path without leaving it (no pointer to follow per
//! entry); only an entry whose path matches is looked at further.

use super::matching::{prefix_core, prefix_matches};
use super::PathMatch;

/// Where an entry's literal is in [`PathTests::literals`].
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    len: u32,
}

#[derive(Clone, Copy, Debug)]
enum Test {
    /// No path condition (or `PathPrefix /`).
    Any,
    Exact(Span),
    /// The prefix without its trailing `/`.
    Prefix(Span),
    /// A regular expression: checked with the whole match.
    Pattern,
}

/// What the table says about one entry for one request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PathCheck {
    /// The path does not match: skip the entry.
    Fails,
    /// The path matches: check the entry's other conditions.
    Passes,
    /// Not decided here: check the entry's whole match.
    Undecided,
}

/// One test per entry, in entry order, and their literals back to back.
#[derive(Debug, Default)]
pub(super) struct PathTests {
    tests: Vec<Test>,
    literals: String,
}

impl PathTests {
    /// Appends the test of the next entry.
    pub(super) fn push(&mut self, path: Option<&PathMatch>) {
        let test = match path {
            None => Test::Any,
            Some(PathMatch::Exact(p)) => self.literal(p).map_or(Test::Pattern, Test::Exact),
            Some(PathMatch::Prefix(p)) => match prefix_core(p) {
                "" => Test::Any,
                core => self.literal(core).map_or(Test::Pattern, Test::Prefix),
            },
            Some(PathMatch::Regex(_)) => Test::Pattern,
        };
        self.tests.push(test);
    }

    /// Stores `text` (None past 4 GiB of literals: the entry is then checked whole).
    fn literal(&mut self, text: &str) -> Option<Span> {
        let start = u32::try_from(self.literals.len()).ok()?;
        let len = u32::try_from(text.len()).ok()?;
        start.checked_add(len)?;
        self.literals.push_str(text);
        Some(Span { start, len })
    }

    fn text(&self, span: Span) -> &str {
        let start = span.start as usize;
        &self.literals[start..start + span.len as usize]
    }

    /// Entry `index` against the request path (Undecided for an unknown index).
    pub(super) fn check(&self, index: usize, path: &str) -> PathCheck {
        let passes = match self.tests.get(index) {
            Some(Test::Any) => true,
            Some(Test::Exact(span)) => self.text(*span) == path,
            Some(Test::Prefix(span)) => prefix_matches(self.text(*span), path),
            Some(Test::Pattern) | None => return PathCheck::Undecided,
        };
        if passes {
            PathCheck::Passes
        } else {
            PathCheck::Fails
        }
    }

    /// Entries in the table.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_path_condition_agrees_with_the_path_match() {
        let conditions = [
            None,
            Some(PathMatch::Exact("/a/b".into())),
            Some(PathMatch::Prefix("/a/".into())),
            Some(PathMatch::Prefix("/".into())),
            Some(PathMatch::regex("/a/[0-9]+").unwrap()),
        ];
        let mut tests = PathTests::default();
        for condition in &conditions {
            tests.push(condition.as_ref());
        }
        assert_eq!(tests.len(), conditions.len());
        for path in ["/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/a/12", "/b"] {
            for (index, condition) in conditions.iter().enumerate() {
                let expected = condition.as_ref().is_none_or(|m| m.matches(path));
                match tests.check(index, path) {
                    PathCheck::Passes => assert!(expected, "{path} passed {condition:?}"),
                    PathCheck::Fails => assert!(!expected, "{path} failed {condition:?}"),
                    PathCheck::Undecided => assert!(matches!(condition, Some(PathMatch::Regex(_)))),
                }
            }
        }
        assert_eq!(tests.check(99, "/"), PathCheck::Undecided);
    }
}
