//! Field selectors (`spec.nodeName=X`, `metadata.name!=Y`, comma-separated).

use serde_json::Value;

/// One `field=value` or `field!=value` requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    pointer: String,
    value: String,
    equal: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<Requirement>,
}

impl FieldSelector {
    /// Parses a selector; unsupported fields are an error (as on the real server).
    pub fn parse(selector: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in selector.split(',').filter(|t| !t.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            if !matches!(field, "metadata.name" | "metadata.namespace" | "spec.nodeName" | "spec.signerName") {
                return Err(format!("field label not supported: {field}"));
            }
            requirements.push(Requirement { pointer: format!("/{}", field.replace('.', "/")), value: value.to_string(), equal });
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = object.pointer(&r.pointer).and_then(Value::as_str).unwrap_or("");
            (actual == r.value) == r.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_name_selector() {
        let s = FieldSelector::parse("spec.nodeName=node-a").unwrap();
        assert!(s.matches(&json!({"spec": {"nodeName": "node-a"}})));
        assert!(!s.matches(&json!({"spec": {"nodeName": "node-b"}})));
        assert!(!s.matches(&json!({"spec": {}})));
        assert!(FieldSelector::parse("").unwrap().matches(&json!({})));
        assert!(FieldSelector::parse("metadata.name!=x").unwrap().matches(&json!({"metadata": {"name": "y"}})));
        assert!(FieldSelector::parse("status.phase=Running").is_err());
    }
}
