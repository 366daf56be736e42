//! Writing AuthorizationPolicy status: `status.conditions` with one `Accepted`
//! condition (GEP-713 style: reason `Accepted`, or `Invalid` with the problem). Only the
//! elected leader writes, next to route status ([`super::status::run`]).
//!
//! Each write reads the policy and replaces its status subresource with the
//! resourceVersion it read. Nothing is written when the condition already says the same
//! thing; `lastTransitionTime` changes only when the condition's status flips.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use super::rbac;
use super::status::WriteOutcome;
use crate::authz::AuthorizationPolicy;
use crate::translate::PolicyStatus;

/// Writes policy status; remembers what it wrote so unchanged policies cost nothing.
pub struct PolicyStatusWriter {
    client: Client,
    written: BTreeMap<(String, String), Value>,
}

impl PolicyStatusWriter {
    pub fn new(client: Client) -> Self {
        Self { client, written: BTreeMap::new() }
    }

    /// Forgets what was written (on losing leadership).
    pub fn forget(&mut self) {
        self.written.clear();
    }

    /// Brings every policy's status in line with `statuses`; false if a write failed.
    pub async fn sync(&mut self, statuses: &[PolicyStatus]) -> bool {
        let mut ok = true;
        let current: Vec<(String, String)> = statuses.iter().map(|s| (s.namespace.clone(), s.name.clone())).collect();
        self.written.retain(|id, _| current.contains(id));
        for status in statuses {
            let id = (status.namespace.clone(), status.name.clone());
            let wanted = condition(status, None);
            if self.written.get(&id) == Some(&wanted) {
                continue;
            }
            match self.write(status).await {
                Ok(WriteOutcome::Stale) => ok = false,
                Ok(outcome) => {
                    tracing::debug!(policy = %format!("{}/{}", id.0, id.1), ?outcome, "policy status");
                    self.written.insert(id, wanted);
                }
                Err(error) => {
                    tracing::warn!(policy = %format!("{}/{}", id.0, id.1), %error, "writing AuthorizationPolicy status failed");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Reads the policy and replaces its `status.conditions`.
    pub async fn write(&self, status: &PolicyStatus) -> Result<WriteOutcome, String> {
        let resource = ApiResource::erase::<AuthorizationPolicy>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &status.namespace, &resource);
        let get = rbac::AUTHORIZATION_POLICY_GET;
        let Some(mut policy) = api.get_opt(&status.name).await.map_err(|e| format!("{e} (needs {get})"))? else {
            return Ok(WriteOutcome::NotFound);
        };
        if status.generation.is_some() && policy.metadata.generation.is_some() && policy.metadata.generation != status.generation {
            return Ok(WriteOutcome::Stale);
        }
        let existing = policy.data.pointer("/status/conditions/0").cloned();
        let Some(conditions) = merged_conditions(existing.as_ref(), status, &now()) else {
            return Ok(WriteOutcome::Unchanged);
        };
        let data = policy.data.as_object_mut().ok_or("the policy is not a JSON object")?;
        data.insert("status".into(), json!({ "conditions": conditions }));
        match api.replace_status(&status.name, &PostParams::default(), &policy).await {
            Ok(_) => Ok(WriteOutcome::Written),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(WriteOutcome::NotFound),
            Err(e) => Err(format!("{e} (needs {})", rbac::AUTHORIZATION_POLICY_STATUS_UPDATE)),
        }
    }
}

fn now() -> String {
    serde_json::to_value(Time(Timestamp::now())).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The `Accepted` condition, with `lastTransitionTime` when given.
fn condition(status: &PolicyStatus, last_transition: Option<&Value>) -> Value {
    let c = &status.accepted;
    let mut v = json!({
        "type": c.type_.to_string(),
        "status": if c.status { "True" } else { "False" },
        "reason": c.reason.as_str(),
        "message": c.message,
    });
    if let Some(g) = status.generation {
        v["observedGeneration"] = json!(g);
    }
    if let Some(t) = last_transition {
        v["lastTransitionTime"] = t.clone();
    }
    v
}

/// The new `status.conditions`, or None when `existing` already says this.
pub fn merged_conditions(existing: Option<&Value>, status: &PolicyStatus, now: &str) -> Option<Vec<Value>> {
    let same_status = existing.is_some_and(|e| e.get("type") == Some(&json!("Accepted")) && e.get("status") == Some(&json!(if status.accepted.status { "True" } else { "False" })));
    let kept = existing.filter(|_| same_status).and_then(|e| e.get("lastTransitionTime")).cloned();
    let desired = condition(status, Some(&kept.unwrap_or_else(|| json!(now))));
    if existing == Some(&desired) {
        return None;
    }
    Some(vec![desired])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{Condition, ConditionType, Reason};

    fn status(accepted: bool) -> PolicyStatus {
        let reason = if accepted { Reason::Accepted } else { Reason::Invalid };
        PolicyStatus { namespace: "shop".into(), name: "p".into(), generation: Some(2), accepted: Condition::new(ConditionType::Accepted, accepted, reason, "m") }
    }

    #[test]
    fn keeps_the_transition_time_while_the_status_holds() {
        let first = merged_conditions(None, &status(true), "T1").unwrap();
        assert_eq!(first[0]["lastTransitionTime"], "T1");
        assert_eq!(first[0]["reason"], "Accepted");
        assert_eq!(first[0]["observedGeneration"], 2);
        assert!(merged_conditions(Some(&first[0]), &status(true), "T2").is_none());
        let flipped = merged_conditions(Some(&first[0]), &status(false), "T3").unwrap();
        assert_eq!(flipped[0]["lastTransitionTime"], "T3");
        assert_eq!(flipped[0]["reason"], "Invalid");
    }
}
