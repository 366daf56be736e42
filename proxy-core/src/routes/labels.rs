//! The metric and access-log labels of a rule, built once with the route table (not
//! per request).

use std::sync::Arc;

use super::Rule;

/// What a matched rule is called in metrics and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleLabels {
    /// `KIND namespace/name` of the rule's route.
    pub route: Arc<str>,
    /// The rule's name, or its index within the route when unnamed.
    pub rule: Arc<str>,
}

impl RuleLabels {
    pub fn of(rule: &Rule) -> Self {
        let name = match &rule.name {
            Some(name) => name.clone(),
            None => rule.index.to_string().into(),
        };
        Self { route: rule.route().to_string().into(), rule: name }
    }
}
