//! CertificateSigningRequests (`certificates.k8s.io/v1`): what the real API server adds to
//! plain object storage. On create, `request`, `signerName` and `usages` are required and
//! `expirationSeconds` must be at least 600, the requester fields of `spec` are set from
//! the caller's identity and the status is cleared; the `approval` subresource changes only
//! the Approved/Denied conditions; the `status` subresource changes the rest of the status
//! (certificate, Failed) and keeps the approval conditions.

use serde_json::{json, Value};

use crate::auth::User;
use crate::store::ApiError;

const APPROVAL_TYPES: [&str; 2] = ["Approved", "Denied"];

/// The shortest `spec.expirationSeconds` the real API server accepts.
pub(crate) const MIN_EXPIRATION_SECONDS: i64 = 600;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(422, "Invalid", message)
}

/// A new CSR as a client POSTs it: requester fields from `user`, no status.
pub(crate) fn prepare_create(object: &mut Value, user: &User) -> Result<(), ApiError> {
    for field in ["request", "signerName"] {
        if object.pointer(&format!("/spec/{field}")).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(invalid(format!("spec.{field}: Required value")));
        }
    }
    if object.pointer("/spec/usages").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return Err(invalid("spec.usages: Required value"));
    }
    if let Some(seconds) = object.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
        if seconds < MIN_EXPIRATION_SECONDS {
            return Err(invalid(format!("spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than 600 seconds (10 minutes)")));
        }
    }
    user.stamp_csr(object);
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    Ok(())
}

fn conditions(status: &Value) -> Vec<Value> {
    status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn is_approval(condition: &Value) -> bool {
    condition.get("type").and_then(Value::as_str).is_some_and(|t| APPROVAL_TYPES.contains(&t))
}

/// The status after a write to `subresource` (`approval` or `status`) of `current`.
pub(crate) fn new_status(current: &Value, subresource: &str, body: &Value) -> Result<Value, ApiError> {
    let old = current.get("status").cloned().unwrap_or_else(|| json!({}));
    let wanted = body.get("status").cloned().unwrap_or_else(|| json!({}));
    let (kept, written): (Vec<Value>, Vec<Value>) = match subresource {
        "approval" => (
            conditions(&old).into_iter().filter(|c| !is_approval(c)).collect(),
            conditions(&wanted).into_iter().filter(is_approval).collect(),
        ),
        _ => (
            conditions(&old).into_iter().filter(is_approval).collect(),
            conditions(&wanted).into_iter().filter(|c| !is_approval(c)).collect(),
        ),
    };
    let mut status = if subresource == "approval" { old.clone() } else { wanted };
    if !status.is_object() {
        status = json!({});
    }
    let all: Vec<Value> = kept.into_iter().chain(written).collect();
    check(&all, &status, &old)?;
    status["conditions"] = json!(all);
    Ok(status)
}

fn has(conditions: &[Value], kind: &str) -> bool {
    conditions.iter().any(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// The validation the real server applies to a CSR's status.
fn check(conditions: &[Value], status: &Value, old: &Value) -> Result<(), ApiError> {
    if has(conditions, "Approved") && has(conditions, "Denied") {
        return Err(invalid("status.conditions: Invalid value: Approved and Denied conditions are mutually exclusive"));
    }
    let certificate = status.get("certificate").and_then(Value::as_str).unwrap_or("");
    if !certificate.is_empty() {
        if !has(conditions, "Approved") || has(conditions, "Failed") {
            return Err(invalid("status.certificate: Forbidden: only allowed on an approved CSR that has not failed"));
        }
        let before = old.get("certificate").and_then(Value::as_str).unwrap_or("");
        if !before.is_empty() && before != certificate {
            return Err(invalid("status.certificate: Forbidden: updates may not modify existing certificate content"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(status: Value) -> Value {
        json!({"metadata": {"name": "c"}, "spec": {}, "status": status})
    }

    #[test]
    fn approval_changes_only_approval_conditions() {
        let current = csr(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        let body = csr(json!({"certificate": "eA==", "conditions": [{"type": "Approved", "status": "True"}, {"type": "Failed", "status": "False"}]}));
        let status = new_status(&current, "approval", &body).unwrap();
        let types: Vec<&str> = status["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["Failed", "Approved"]);
        assert!(status.get("certificate").is_none());
    }

    #[test]
    fn status_keeps_approval_and_needs_it_for_a_certificate() {
        let pending = csr(json!({}));
        let body = csr(json!({"certificate": "eA=="}));
        assert_eq!(new_status(&pending, "status", &body).unwrap_err().code, 422);
        let approved = csr(json!({"conditions": [{"type": "Approved", "status": "True"}]}));
        let status = new_status(&approved, "status", &body).unwrap();
        assert_eq!(status["certificate"], "eA==");
        assert_eq!(status["conditions"][0]["type"], "Approved");
        let both = csr(json!({"conditions": [{"type": "Approved"}, {"type": "Denied"}]}));
        assert_eq!(new_status(&approved, "approval", &both).unwrap_err().code, 422);
    }

    #[test]
    fn create_requires_a_request_and_a_signer() {
        let mut object = json!({"metadata": {"name": "c"}, "spec": {"signerName": "x", "usages": ["client auth"]}});
        assert_eq!(prepare_create(&mut object, &User::anonymous()).unwrap_err().code, 422);
        object["spec"]["request"] = json!("AA==");
        object["spec"]["expirationSeconds"] = json!(599);
        assert!(prepare_create(&mut object, &User::anonymous()).unwrap_err().message.contains("600 seconds"));
        object["spec"]["expirationSeconds"] = json!(600);
        object["status"] = json!({"certificate": "eA=="});
        prepare_create(&mut object, &User::anonymous()).unwrap();
        assert!(object.get("status").is_none());
        assert_eq!(object["spec"]["username"], "system:anonymous");
    }
}
