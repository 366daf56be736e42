//! Route rule fields Ambit does not implement: each one set makes its rule invalid
//! (dropped, `UnsupportedValue` in the route status), never silently ignored.
//!
//! The rule fields Ambit reads are the ones [`super::spec::RuleSpec`] names; any other
//! one lands in its `other` map. Today that is `sessionPersistence` (GEP-1619,
//! experimental channel): a rule that asks for sticky sessions and is served without
//! them would behave differently from what its author wrote, so it is dropped and the
//! status says why. The same holds for any field a newer Gateway API adds.

use std::collections::BTreeMap;

use super::rules::RuleError;
use super::status::Reason;

/// What the status says about a field Ambit knows of but does not implement.
fn known_unsupported(field: &str) -> Option<&'static str> {
    Some(match field {
        "sessionPersistence" => "sessionPersistence (GEP-1619) is not supported",
        _ => return None,
    })
}

/// Fails on the first rule field (in name order) Ambit does not implement.
pub fn check_rule_fields(other: &BTreeMap<String, serde_json::Value>) -> Result<(), RuleError> {
    let Some(field) = other.keys().next() else { return Ok(()) };
    let message = match known_unsupported(field) {
        Some(text) => text.to_owned(),
        None => format!("rule field {field:?} is not supported"),
    };
    Err(RuleError { reason: Reason::UnsupportedValue, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_other_field_passes() {
        assert!(check_rule_fields(&BTreeMap::new()).is_ok());
    }

    #[test]
    fn each_field_is_named() {
        let one = |name: &str| {
            let mut map = BTreeMap::new();
            map.insert(name.to_owned(), serde_json::json!({}));
            check_rule_fields(&map).unwrap_err()
        };
        let error = one("sessionPersistence");
        assert_eq!(error.reason, Reason::UnsupportedValue);
        assert!(error.message.contains("sessionPersistence (GEP-1619)"), "{}", error.message);
        assert!(one("someFutureField").message.contains("\"someFutureField\" is not supported"));
    }
}
