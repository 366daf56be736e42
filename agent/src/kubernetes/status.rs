//! Writing route status: for each HTTPRoute/GRPCRoute with a Service parent, the
//! `status.parents[]` entries of controllerName `ambit.dev/mesh`, next to other
//! controllers' entries (kept as they are). Only the elected leader writes.
//!
//! Each write reads the route first and replaces its status subresource with the
//! resourceVersion it read (a concurrent change makes it fail and retry). Nothing is
//! written when our entries already say the same thing (conditions keep their
//! `lastTransitionTime` while their status holds), so there is no churn, including right
//! after a leadership change. What was written is remembered per route object (its
//! uid), so a route deleted and created again under the same name, which comes without
//! status, is written again even when its status reads the same.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::routes::RouteKind;
use gateway_api::apis::experimental::tcproutes::TcpRoute;
use gateway_api::apis::experimental::tlsroutes::TlsRoute;
use gateway_api::apis::experimental::grpcroutes::GrpcRoute;
use gateway_api::apis::experimental::httproutes::HttpRoute;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::rbac::{self, Permission};
use crate::cluster::ClusterState;
use crate::translate::{ParentRef, ParentStatus, RouteStatus};
use crate::CONTROLLER_NAME;

/// How often failed writes are retried.
const RETRY: Duration = Duration::from_secs(1);

/// Identifies a route.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteId {
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
}

/// What one route's write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// Our entries already said this.
    Unchanged,
    /// The route is gone.
    NotFound,
    /// The route changed since the translation (newer generation): wait for the feed.
    Stale,
}

/// The route statuses to bring about, with the route objects they were computed from.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub statuses: Vec<RouteStatus>,
    /// `metadata.uid` of each route object the statuses were computed from.
    pub uids: BTreeMap<RouteId, String>,
    /// AuthorizationPolicy statuses ([`super::policy_status`]).
    pub policies: Vec<crate::translate::PolicyStatus>,
}

impl Desired {
    /// `statuses` as translated from `state`, with the uids of `state`'s routes.
    pub fn new(statuses: Vec<RouteStatus>, state: &ClusterState) -> Self {
        let mut uids = BTreeMap::new();
        let mut add = |kind: RouteKind, namespace: &str, name: &str, uid: &Option<String>| {
            if let Some(uid) = uid {
                uids.insert(RouteId { kind, namespace: namespace.to_string(), name: name.to_string() }, uid.clone());
            }
        };
        for (key, route) in &state.http_routes {
            add(RouteKind::Http, &key.namespace, &key.name, &route.metadata.uid);
        }
        for (key, route) in &state.grpc_routes {
            add(RouteKind::Grpc, &key.namespace, &key.name, &route.metadata.uid);
        }
        for (key, route) in &state.tls_routes {
            add(RouteKind::Tls, &key.namespace, &key.name, &route.metadata.uid);
        }
        for (key, route) in &state.tcp_routes {
            add(RouteKind::Tcp, &key.namespace, &key.name, &route.metadata.uid);
        }
        Self { statuses, uids, policies: Vec::new() }
    }
}

impl Desired {
    /// With the AuthorizationPolicy statuses to write too.
    pub fn with_policies(mut self, policies: Vec<crate::translate::PolicyStatus>) -> Self {
        self.policies = policies;
        self
    }
}

/// What was written for one route: our entries, on which object.
#[derive(Clone, Debug, PartialEq)]
struct Written {
    uid: Option<String>,
    entries: Value,
}

/// Writes route status; remembers what it wrote so unchanged routes cost nothing.
pub struct StatusWriter {
    client: Client,
    written: BTreeMap<RouteId, Written>,
}

impl StatusWriter {
    pub fn new(client: Client) -> Self {
        Self { client, written: BTreeMap::new() }
    }

    /// Forgets what was written (on losing leadership: someone else may write meanwhile).
    pub fn forget(&mut self) {
        self.written.clear();
    }

    /// Brings every route's status in line with `desired`; routes written before that
    /// no longer have a Service parent lose our entries. Returns false if some write
    /// failed (retry later).
    pub async fn sync(&mut self, desired: &Desired) -> bool {
        let mut ok = true;
        let mut current = BTreeSet::new();
        for status in desired.statuses.iter().filter(|s| !s.parents.is_empty()) {
            let id = RouteId { kind: status.kind, namespace: status.namespace.clone(), name: status.name.clone() };
            current.insert(id.clone());
            let wanted = Written {
                uid: desired.uids.get(&id).cloned(),
                entries: json!(status.parents.iter().map(|p| entry(p, status.generation)).collect::<Vec<_>>()),
            };
            if self.written.get(&id) == Some(&wanted) {
                continue;
            }
            ok &= self.write_logged(&id, status.generation, &status.parents, wanted).await;
        }
        let gone: Vec<RouteId> = self.written.keys().filter(|id| !current.contains(id)).cloned().collect();
        for id in gone {
            let done = self.write_logged(&id, None, &[], Written { uid: None, entries: json!([]) }).await;
            ok &= done;
            if done {
                self.written.remove(&id);
            }
        }
        ok
    }

    async fn write_logged(&mut self, id: &RouteId, generation: Option<i64>, parents: &[ParentStatus], desired: Written) -> bool {
        match self.write(id, generation, parents).await {
            Ok(outcome) => {
                tracing::debug!(route = ?id, ?outcome, "route status");
                match outcome {
                    WriteOutcome::Written | WriteOutcome::Unchanged | WriteOutcome::NotFound => {
                        self.written.insert(id.clone(), desired);
                        true
                    }
                    WriteOutcome::Stale => false,
                }
            }
            Err(error) => {
                tracing::warn!(route = %format!("{}/{}", id.namespace, id.name), kind = ?id.kind, %error, "writing route status failed");
                false
            }
        }
    }

    /// Reads the route and replaces our entries in its `status.parents`.
    pub async fn write(&self, id: &RouteId, generation: Option<i64>, parents: &[ParentStatus]) -> Result<WriteOutcome, String> {
        let (resource, get, update): (ApiResource, Permission, Permission) = match id.kind {
            RouteKind::Http => (ApiResource::erase::<HttpRoute>(&()), rbac::HTTP_ROUTE_GET, rbac::HTTP_ROUTE_STATUS_UPDATE),
            RouteKind::Grpc => (ApiResource::erase::<GrpcRoute>(&()), rbac::GRPC_ROUTE_GET, rbac::GRPC_ROUTE_STATUS_UPDATE),
            RouteKind::Tls => (ApiResource::erase::<TlsRoute>(&()), rbac::TLS_ROUTE_GET, rbac::TLS_ROUTE_STATUS_UPDATE),
            RouteKind::Tcp => (ApiResource::erase::<TcpRoute>(&()), rbac::TCP_ROUTE_GET, rbac::TCP_ROUTE_STATUS_UPDATE),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &id.namespace, &resource);
        let Some(mut route) = api.get_opt(&id.name).await.map_err(|e| format!("{e} (needs {get})"))? else {
            return Ok(WriteOutcome::NotFound);
        };
        if generation.is_some() && route.metadata.generation.is_some() && route.metadata.generation != generation {
            return Ok(WriteOutcome::Stale);
        }
        let existing: Vec<Value> =
            route.data.pointer("/status/parents").and_then(Value::as_array).cloned().unwrap_or_default();
        let Some(parents) = merged_parents(&existing, parents, generation, &now()) else {
            return Ok(WriteOutcome::Unchanged);
        };
        let data = route.data.as_object_mut().ok_or("the route is not a JSON object")?;
        let status = data.entry("status").or_insert_with(|| json!({}));
        if !status.is_object() {
            *status = json!({});
        }
        status["parents"] = Value::Array(parents);
        match api.replace_status(&id.name, &PostParams::default(), &route).await {
            Ok(_) => Ok(WriteOutcome::Written),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(WriteOutcome::NotFound),
            Err(e) => Err(format!("{e} (needs {update})")),
        }
    }
}

fn now() -> String {
    serde_json::to_value(Time(Timestamp::now())).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The new `status.parents` (other controllers' entries first, in their order, then
/// ours), or None when our entries already say this.
pub fn merged_parents(existing: &[Value], ours: &[ParentStatus], generation: Option<i64>, now: &str) -> Option<Vec<Value>> {
    let is_ours = |e: &&Value| e.get("controllerName").and_then(Value::as_str) == Some(CONTROLLER_NAME);
    let current_ours: Vec<&Value> = existing.iter().filter(is_ours).collect();
    let desired: Vec<Value> = ours
        .iter()
        .map(|parent| {
            let mut e = entry(parent, generation);
            let previous = current_ours
                .iter()
                .find(|c| c.get("parentRef").is_some_and(|r| same_parent(r, &e["parentRef"])));
            if let Some(conditions) = e.get_mut("conditions").and_then(Value::as_array_mut) {
                for condition in conditions {
                    let kept = previous
                        .and_then(|p| p.get("conditions")?.as_array())
                        .and_then(|cs| cs.iter().find(|c| c.get("type") == condition.get("type") && c.get("status") == condition.get("status")))
                        .and_then(|c| c.get("lastTransitionTime").cloned());
                    condition["lastTransitionTime"] = kept.unwrap_or_else(|| json!(now));
                }
            }
            e
        })
        .collect();
    let unchanged = current_ours.len() == desired.len() && current_ours.iter().zip(&desired).all(|(c, d)| same_entry(c, d));
    if unchanged {
        return None;
    }
    let mut parents: Vec<Value> = existing.iter().filter(|e| !is_ours(e)).cloned().collect();
    parents.extend(desired);
    Some(parents)
}

/// Our entry for one parent, without lastTransitionTime.
fn entry(parent: &ParentStatus, generation: Option<i64>) -> Value {
    let conditions: Vec<Value> = parent
        .conditions
        .iter()
        .map(|c| {
            let mut v = json!({
                "type": c.type_.to_string(),
                "status": if c.status { "True" } else { "False" },
                "reason": c.reason.as_str(),
                "message": c.message,
            });
            if let Some(g) = generation {
                v["observedGeneration"] = json!(g);
            }
            v
        })
        .collect();
    json!({
        "parentRef": parent_ref(&parent.parent_ref),
        "controllerName": CONTROLLER_NAME,
        "conditions": conditions,
    })
}

fn parent_ref(r: &ParentRef) -> Value {
    let mut m = Map::new();
    if let Some(g) = &r.group {
        m.insert("group".into(), json!(g));
    }
    if let Some(k) = &r.kind {
        m.insert("kind".into(), json!(k));
    }
    if let Some(ns) = &r.namespace {
        m.insert("namespace".into(), json!(ns));
    }
    m.insert("name".into(), json!(r.name));
    if let Some(s) = &r.section_name {
        m.insert("sectionName".into(), json!(s));
    }
    if let Some(p) = r.port {
        m.insert("port".into(), json!(p));
    }
    Value::Object(m)
}

/// parentRefs equal after the API server's defaults (group gateway.networking.k8s.io,
/// kind Gateway) are applied to both.
fn same_parent(a: &Value, b: &Value) -> bool {
    fn normal(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.entry("group").or_insert_with(|| json!("gateway.networking.k8s.io"));
            m.entry("kind").or_insert_with(|| json!("Gateway"));
        }
        v
    }
    normal(a) == normal(b)
}

fn same_entry(current: &Value, desired: &Value) -> bool {
    same_parent(&current["parentRef"], &desired["parentRef"])
        && current.get("controllerName") == desired.get("controllerName")
        && current.get("conditions") == desired.get("conditions")
}

/// Runs the writer: whenever this agent leads and the statuses (or the leadership)
/// change, sync; retry failures every second. Ends at `shutdown`.
pub async fn run(
    client: Client,
    mut leading: watch::Receiver<bool>,
    mut statuses: watch::Receiver<Arc<Desired>>,
    shutdown: CancellationToken,
) {
    let mut policy_writer = super::policy_status::PolicyStatusWriter::new(client.clone());
    let mut writer = StatusWriter::new(client);
    let mut retry = tokio::time::interval(RETRY);
    let mut failed = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = leading.changed() => {
                if changed.is_err() { return; }
                if !*leading.borrow_and_update() { writer.forget(); policy_writer.forget(); continue; }
            }
            changed = statuses.changed() => { if changed.is_err() { return; } }
            _ = retry.tick(), if failed => {}
        }
        if !*leading.borrow() {
            continue;
        }
        let current = statuses.borrow_and_update().clone();
        let routes_ok = writer.sync(&current).await;
        let policies_ok = policy_writer.sync(&current.policies).await;
        failed = !(routes_ok && policies_ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{Condition, ConditionType, Reason};

    fn parent(accepted: bool) -> ParentStatus {
        ParentStatus {
            parent_ref: ParentRef { group: Some(String::new()), kind: Some("Service".into()), name: "svc".into(), port: Some(80), ..Default::default() },
            controller_name: CONTROLLER_NAME.into(),
            conditions: vec![
                Condition::new(ConditionType::Accepted, accepted, if accepted { Reason::Accepted } else { Reason::NoMatchingParent }, "m"),
                Condition::new(ConditionType::ResolvedRefs, true, Reason::ResolvedRefs, "ok"),
            ],
        }
    }

    #[test]
    fn keeps_other_controllers_and_transition_times() {
        let other = json!({"parentRef": {"name": "gw"}, "controllerName": "example.com/gw", "conditions": []});
        let first = merged_parents(std::slice::from_ref(&other), &[parent(true)], Some(3), "T1").unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], other);
        assert_eq!(first[1]["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(first[1]["conditions"][0]["observedGeneration"], 3);
        assert_eq!(first[1]["parentRef"], json!({"group": "", "kind": "Service", "name": "svc", "port": 80}));
        // Same status again: nothing to write.
        assert!(merged_parents(&first, &[parent(true)], Some(3), "T2").is_none());
        // A flipped condition gets a new time; the unchanged one keeps its own.
        let second = merged_parents(&first, &[parent(false)], Some(4), "T3").unwrap();
        assert_eq!(second[1]["conditions"][0]["lastTransitionTime"], "T3");
        assert_eq!(second[1]["conditions"][1]["lastTransitionTime"], "T1");
        assert_eq!(second[1]["conditions"][1]["observedGeneration"], 4);
        // No Service parent any more: our entry goes, the other stays.
        assert_eq!(merged_parents(&second, &[], Some(4), "T4").unwrap(), vec![other]);
    }
}
