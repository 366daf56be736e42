//! Compiling the RegularExpression values of route matches: anchored structurally and
//! bounded in memory, per pattern and per configuration.
//!
//! A pattern is first compiled on its own. This rejects a pattern that is not a
//! regular expression by itself, such as `a)|(?:.*`, which would otherwise close the
//! anchoring group `^(?:…)$` and match anything. Only then is `^(?:pattern)$` built,
//! which therefore always means "the whole value matches `pattern`".

use std::cell::Cell;

use regex::{Regex, RegexBuilder};
use regex_automata::meta;

/// Most heap one pattern's compiled program may take (the regex crate's default: 10 MiB).
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Most memory one pattern's lazy DFA cache may grow to, per thread matching with it
/// (the regex crate's default: 2 MiB).
pub const PATTERN_DFA_LIMIT: usize = 1 << 20;
/// Most compiled-regex heap one configuration may hold, summed over its patterns.
pub const CONFIG_REGEX_BUDGET: usize = 64 << 20;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{0}")]
    Syntax(String),
    #[error("compiles to more than the per-pattern limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("needs {needs} bytes compiled, but the configuration's regular expressions have only {left} of their {total}-byte budget left")]
    OverBudget { needs: usize, left: usize, total: usize },
}

/// The compiled-regex memory one configuration may still use. Charged by
/// [`compile_anchored`]; one budget is shared by every route of a translation.
#[derive(Debug)]
pub struct RegexBudget {
    total: usize,
    left: Cell<usize>,
    /// Charges asked for so far, and how many of them were refused (did not fit).
    asked: Cell<usize>,
    refused: Cell<usize>,
    /// The least left since [`RegexBudget::mark_lowest`].
    lowest: Cell<usize>,
}

impl RegexBudget {
    pub fn new(total: usize) -> Self {
        Self { total, left: Cell::new(total), asked: Cell::new(0), refused: Cell::new(0), lowest: Cell::new(total) }
    }

    /// No configuration-wide limit (the per-pattern limits still apply).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Bytes charged so far.
    pub fn used(&self) -> usize {
        self.total - self.left.get()
    }

    /// Bytes still free.
    pub fn left(&self) -> usize {
        self.left.get()
    }

    /// How many charges were asked for so far (a compilation that asked for none did
    /// not depend on the budget).
    pub fn asked(&self) -> usize {
        self.asked.get()
    }

    /// Starts watching the least left (see [`RegexBudget::lowest`]).
    pub fn mark_lowest(&self) {
        self.lowest.set(self.left.get());
    }

    /// The least left since the last [`RegexBudget::mark_lowest`]: with what was left
    /// then, how much the charges since needed at their peak.
    pub fn lowest(&self) -> usize {
        self.lowest.get()
    }

    /// How many charges were refused so far.
    pub fn refused(&self) -> usize {
        self.refused.get()
    }

    /// Charges `bytes` that patterns compiled earlier (and kept) use; false, charging
    /// nothing, when they do not fit.
    pub fn spend(&self, bytes: usize) -> bool {
        self.charge(bytes).is_ok()
    }

    fn charge(&self, needs: usize) -> Result<(), PatternError> {
        self.asked.set(self.asked.get() + 1);
        let left = self.left.get();
        match left.checked_sub(needs) {
            Some(rest) => {
                self.left.set(rest);
                self.lowest.set(self.lowest.get().min(rest));
                Ok(())
            }
            None => {
                self.refused.set(self.refused.get() + 1);
                Err(PatternError::OverBudget { needs, left, total: self.total })
            }
        }
    }

    fn refund(&self, bytes: usize) {
        self.left.set(self.left.get().saturating_add(bytes).min(self.total));
    }
}

impl Default for RegexBudget {
    fn default() -> Self {
        Self::new(CONFIG_REGEX_BUDGET)
    }
}

/// Compiles `pattern` so that it must match a whole value, within the per-pattern limits
/// and charging `budget` for its compiled size.
pub fn compile_anchored(pattern: &str, budget: &RegexBudget) -> Result<Regex, PatternError> {
    let alone = meta::Regex::builder()
        .configure(meta::Config::new().nfa_size_limit(Some(PATTERN_SIZE_LIMIT)).hybrid_cache_capacity(PATTERN_DFA_LIMIT))
        .build(pattern)
        .map_err(build_error)?;
    let cost = alone.memory_usage();
    drop(alone);
    budget.charge(cost)?;
    let anchored = RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_DFA_LIMIT)
        .build();
    anchored.map_err(|error| {
        budget.refund(cost);
        match error {
            regex::Error::CompiledTooBig(_) => PatternError::TooLarge { limit: PATTERN_SIZE_LIMIT },
            other => PatternError::Syntax(other.to_string()),
        }
    })
}

fn build_error(error: meta::BuildError) -> PatternError {
    match error.size_limit() {
        Some(_) => PatternError::TooLarge { limit: PATTERN_SIZE_LIMIT },
        None => match error.syntax_error() {
            Some(syntax) => PatternError::Syntax(syntax.to_string()),
            None => PatternError::Syntax(error.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_cannot_close_the_anchoring_group() {
        let budget = RegexBudget::unlimited();
        for escape in ["a)|(?:.*", ".*)|(", ")(", "a)|(?:b"] {
            let error = compile_anchored(escape, &budget).unwrap_err();
            assert!(matches!(error, PatternError::Syntax(_)), "{escape}: {error}");
        }
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn alternation_stays_inside_the_anchors() {
        let re = compile_anchored("a|b.*", &RegexBudget::unlimited()).unwrap();
        assert!(re.is_match("a") && re.is_match("bxyz"));
        assert!(!re.is_match("xa") && !re.is_match("ab") && !re.is_match("xb"));
    }

    #[test]
    fn a_pattern_over_the_size_limit_is_refused() {
        let budget = RegexBudget::unlimited();
        let error = compile_anchored("(a{1000}){1000}", &budget).unwrap_err();
        assert_eq!(error, PatternError::TooLarge { limit: PATTERN_SIZE_LIMIT });
        let error = compile_anchored(r"\w{500}", &budget).unwrap_err();
        assert_eq!(error, PatternError::TooLarge { limit: PATTERN_SIZE_LIMIT });
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_configuration_budget_is_shared_and_refuses_once_spent() {
        let one = compile_anchored("/api/v[0-9]+/.*", &RegexBudget::unlimited());
        assert!(one.is_ok());
        let probe = RegexBudget::unlimited();
        compile_anchored("/api/v[0-9]+/.*", &probe).unwrap();
        let cost = probe.used();
        assert!(cost > 0 && cost < PATTERN_SIZE_LIMIT, "cost {cost}");

        let budget = RegexBudget::new(cost * 2 + cost / 2);
        compile_anchored("/api/v[0-9]+/.*", &budget).unwrap();
        compile_anchored("/api/v[0-9]+/.*", &budget).unwrap();
        let error = compile_anchored("/api/v[0-9]+/.*", &budget).unwrap_err();
        assert!(matches!(error, PatternError::OverBudget { needs, .. } if needs == cost), "{error}");
        assert_eq!(budget.used(), cost * 2, "a refused pattern is not charged");
    }
}
