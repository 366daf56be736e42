//! Label selectors (metav1.LabelSelector): checked once, then matched against pods.

use std::collections::BTreeMap;

use super::resource::LabelSelectorSpec;

/// A checked label selector. Empty: every pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl Selector {
    /// Checks `spec`: label keys and values must be valid, operators known, `values`
    /// non-empty for In/NotIn and absent for Exists/DoesNotExist.
    pub fn new(spec: &LabelSelectorSpec) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for (key, value) in spec.match_labels.iter().flatten() {
            label_key(key)?;
            label_value(value).map_err(|e| format!("matchLabels[{key}]: {e}"))?;
            requirements.push(Requirement { key: key.clone(), op: Operator::In(vec![value.clone()]) });
        }
        for (i, expression) in spec.match_expressions.iter().flatten().enumerate() {
            let at = |e: String| format!("matchExpressions[{i}]: {e}");
            label_key(&expression.key).map_err(at)?;
            let values = expression.values.clone().unwrap_or_default();
            for value in &values {
                label_value(value).map_err(at)?;
            }
            let op = match (expression.operator.as_str(), values.is_empty()) {
                ("In", false) => Operator::In(values),
                ("NotIn", false) => Operator::NotIn(values),
                ("Exists", true) => Operator::Exists,
                ("DoesNotExist", true) => Operator::DoesNotExist,
                ("In" | "NotIn", true) => return Err(at(format!("operator {} needs values", expression.operator))),
                ("Exists" | "DoesNotExist", false) => return Err(at(format!("operator {} takes no values", expression.operator))),
                (other, _) => return Err(at(format!("unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"))),
            };
            requirements.push(Requirement { key: expression.key.clone(), op });
        }
        Ok(Self { requirements })
    }

    /// Whether a pod with `labels` is selected.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key));
            match &r.op {
                Operator::In(values) => value.is_some_and(|v| values.contains(v)),
                Operator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
            }
        })
    }
}

/// `[prefix/]name`: prefix a DNS subdomain, name 1-63 characters.
fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let subdomain = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !subdomain {
            return Err(format!("invalid label key {key:?}: its prefix must be a DNS subdomain"));
        }
    }
    if name.is_empty() || !label_name(name) {
        return Err(format!("invalid label key {key:?}: the name must be 1-63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric"));
    }
    Ok(())
}

fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || label_name(value) {
        Ok(())
    } else {
        Err(format!("invalid label value {value:?}: at most 63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric"))
    }
}

fn label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::resource::SelectorRequirementSpec;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, operator: &str, values: Option<&[&str]>) -> SelectorRequirementSpec {
        SelectorRequirementSpec { key: key.into(), operator: operator.into(), values: values.map(|v| v.iter().map(|s| s.to_string()).collect()) }
    }

    #[test]
    fn empty_selects_everything_and_labels_and_expressions_combine() {
        assert!(Selector::new(&LabelSelectorSpec::default()).unwrap().matches(None));
        let spec = LabelSelectorSpec {
            match_labels: Some(labels(&[("app", "checkout")])),
            match_expressions: Some(vec![expr("tier", "NotIn", Some(&["canary"])), expr("example.com/owner", "Exists", None)]),
        };
        let selector = Selector::new(&spec).unwrap();
        assert!(selector.matches(Some(&labels(&[("app", "checkout"), ("example.com/owner", "x")]))));
        assert!(!selector.matches(Some(&labels(&[("app", "checkout"), ("example.com/owner", "x"), ("tier", "canary")]))));
        assert!(!selector.matches(Some(&labels(&[("app", "checkout")]))));
        assert!(!selector.matches(None));
    }

    #[test]
    fn bad_selectors_are_refused() {
        let bad = [
            LabelSelectorSpec { match_labels: Some(labels(&[("-app", "x")])), ..Default::default() },
            LabelSelectorSpec { match_labels: Some(labels(&[("app", "x y")])), ..Default::default() },
            LabelSelectorSpec { match_labels: Some(labels(&[("Bad_Prefix/app", "x")])), ..Default::default() },
            LabelSelectorSpec { match_expressions: Some(vec![expr("app", "Equals", Some(&["x"]))]), ..Default::default() },
            LabelSelectorSpec { match_expressions: Some(vec![expr("app", "In", None)]), ..Default::default() },
            LabelSelectorSpec { match_expressions: Some(vec![expr("app", "Exists", Some(&["x"]))]), ..Default::default() },
        ];
        for spec in bad {
            assert!(Selector::new(&spec).is_err(), "{spec:?}");
        }
    }
}
