//! The object store: objects per resource type, one global resourceVersion counter, an
//! event history (compactable, as etcd's is) and live event fan-out to watches.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::resource::Resource;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as delivered to watches.
#[derive(Clone, Debug)]
pub struct Change {
    pub resource_version: u64,
    pub resource: Resource,
    pub kind: EventType,
    /// The object after the change (before it, for deletions, with the deletion's resourceVersion).
    pub object: Value,
}

/// Why a write was refused, as an HTTP status and Kubernetes `Status` reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into() }
    }

    /// The `Status` object the real API server sends.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

type Key = (String, String);

/// Who writes an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// An API client over HTTP: as the real API server does, a new object always gets a
    /// server-chosen uid.
    Client,
    /// The test playing the cluster (controllers, kubelet) through
    /// [`FakeApiServer::apply`](crate::FakeApiServer::apply): a uid it gives a new
    /// object is kept, since a test bed's kubelet-style pod cgroups are named after the
    /// pod uids it chose.
    Cluster,
}

/// All objects and their history.
pub struct Store {
    objects: BTreeMap<Resource, BTreeMap<Key, Value>>,
    resource_version: u64,
    history: Vec<Change>,
    /// Watches from a resourceVersion below this get `410 Gone`.
    compacted_below: u64,
    next_uid: u64,
    events: broadcast::Sender<Change>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self { objects: BTreeMap::new(), resource_version: 1, history: Vec::new(), compacted_below: 0, next_uid: 1, events }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn compacted_below(&self) -> u64 {
        self.compacted_below
    }

    /// Drops the history: watches from any resourceVersion older than the current one get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_below = self.resource_version;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.events.subscribe()
    }

    /// The changes to `resource` after `since`, oldest first.
    pub fn changes_since(&self, resource: Resource, since: u64) -> Vec<Change> {
        self.history.iter().filter(|c| c.resource == resource && c.resource_version > since).cloned().collect()
    }

    /// Current objects of a type (optionally in one namespace), sorted by namespace/name.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&resource)
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.objects.get(&resource)?.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    fn bump(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn record(&mut self, resource: Resource, kind: EventType, object: Value) {
        let change = Change { resource_version: self.resource_version, resource, kind, object };
        self.history.push(change.clone());
        let _ = self.events.send(change);
    }

    /// Creates (`create_only`) or creates-or-updates an object, as `kubectl apply` of a
    /// whole object would: metadata.uid/creationTimestamp are kept, resourceVersion is
    /// bumped, generation is bumped when anything but metadata and status changed.
    /// When `expect_version` is given (a PUT carrying metadata.resourceVersion), a
    /// different stored version is a 409 Conflict.
    pub fn put(&mut self, resource: Resource, object: Value, create_only: bool) -> Result<Value, ApiError> {
        self.put_by(resource, object, create_only, Writer::Client)
    }

    /// [`put`](Self::put) on behalf of `writer`: the test side keeps the uid it gives a
    /// new object (see [`Writer::Cluster`]).
    pub fn put_by(&mut self, resource: Resource, mut object: Value, create_only: bool, writer: Writer) -> Result<Value, ApiError> {
        let (namespace, name) = identity(resource, &object)?;
        let expect_version = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        let existing = self.get(resource, &namespace, &name);
        if create_only && existing.is_some() {
            return Err(ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", resource.plural())));
        }
        if let (Some(expected), Some(current)) = (&expect_version, &existing) {
            if current.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", resource.plural()),
                ));
            }
        }
        if !create_only && existing.is_none() && expect_version.is_some() {
            return Err(ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", resource.plural())));
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind());
        let rv = self.bump();
        let meta = object.get_mut("metadata").and_then(Value::as_object_mut).ok_or_else(|| bad("metadata must be an object"))?;
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.remove("managedFields");
        if resource.namespaced() {
            meta.insert("namespace".into(), json!(namespace));
        }
        match &existing {
            Some(old) => {
                for field in ["uid", "creationTimestamp"] {
                    if let Some(v) = old.pointer(&format!("/metadata/{field}")) {
                        object["metadata"][field] = v.clone();
                    }
                }
                if resource.has_generation() {
                    let old_gen = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
                    let generation = if without_meta_and_status(old) == without_meta_and_status(&object) { old_gen } else { old_gen + 1 };
                    object["metadata"]["generation"] = json!(generation);
                }
                if object.get("status").is_none() {
                    if let Some(status) = old.get("status") {
                        object["status"] = status.clone();
                    }
                }
            }
            None => {
                let given = object.pointer("/metadata/uid").and_then(Value::as_str).is_some_and(|u| !u.is_empty());
                if !(writer == Writer::Cluster && given) {
                    let uid = self.next_uid;
                    self.next_uid += 1;
                    object["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{uid:012}"));
                }
                object["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
                if resource.has_generation() {
                    object["metadata"]["generation"] = json!(1);
                }
            }
        }
        self.objects.entry(resource).or_default().insert((namespace, name), object.clone());
        let kind = if existing.is_some() { EventType::Modified } else { EventType::Added };
        self.record(resource, kind, object.clone());
        Ok(object)
    }

    /// Replaces an existing object's `status` (the status subresource): the rest of the
    /// object is kept; generation is unchanged.
    pub fn put_status(&mut self, resource: Resource, namespace: &str, name: &str, status: Value, expect_version: Option<&str>) -> Result<Value, ApiError> {
        let mut object = self
            .get(resource, namespace, name)
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", resource.plural())))?;
        if let Some(expected) = expect_version.filter(|v| !v.is_empty()) {
            if object.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(expected) {
                return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified", resource.plural())));
            }
        }
        let rv = self.bump();
        object["status"] = status;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.entry(resource).or_default().insert((namespace.to_string(), name.to_string()), object.clone());
        self.record(resource, EventType::Modified, object.clone());
        Ok(object)
    }

    /// Deletes an object; returns it (with the deletion's resourceVersion) if it existed.
    pub fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let key = (if resource.namespaced() { namespace.to_string() } else { String::new() }, name.to_string());
        let mut object = self.objects.get_mut(&resource)?.remove(&key)?;
        let rv = self.bump();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(resource, EventType::Deleted, object.clone());
        Some(object)
    }
}

fn bad(message: &str) -> ApiError {
    ApiError::new(400, "BadRequest", message)
}

fn identity(resource: Resource, object: &Value) -> Result<Key, ApiError> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::new(422, "Invalid", "metadata.name: Required value"))?;
    let namespace = if resource.namespaced() {
        object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string()
    } else {
        String::new()
    };
    Ok((namespace, name.to_string()))
}

fn without_meta_and_status(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, path: &str) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"namespace": "a", "name": name}, "spec": {"rules": [{"matches": [{"path": {"value": path}}]}]}})
    }

    #[test]
    fn generation_follows_spec_and_versions_are_monotonic() {
        let mut store = Store::new();
        let a = store.put(Resource::HttpRoutes, route("r", "/a"), false).unwrap();
        assert_eq!(a["metadata"]["generation"], 1);
        let mut labelled = route("r", "/a");
        labelled["metadata"]["labels"] = json!({"x": "y"});
        let b = store.put(Resource::HttpRoutes, labelled, false).unwrap();
        assert_eq!(b["metadata"]["generation"], 1);
        let c = store.put(Resource::HttpRoutes, route("r", "/b"), false).unwrap();
        assert_eq!(c["metadata"]["generation"], 2);
        let rv = |v: &Value| v["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap();
        assert!(rv(&a) < rv(&b) && rv(&b) < rv(&c));
        assert_eq!(a["metadata"]["uid"], c["metadata"]["uid"]);
        let s = store.put_status(Resource::HttpRoutes, "a", "r", json!({"parents": []}), None).unwrap();
        assert_eq!(s["metadata"]["generation"], 2);
        assert_eq!(s["spec"], c["spec"]);
    }

    #[test]
    fn only_the_cluster_side_chooses_uids() {
        let mut store = Store::new();
        let pod = |name: &str| json!({"metadata": {"namespace": "n", "name": name, "uid": "bed-chosen"}, "spec": {}});
        let by_client = store.put(Resource::Pods, pod("a"), true).unwrap();
        assert_ne!(by_client["metadata"]["uid"], "bed-chosen");
        let by_cluster = store.put_by(Resource::Pods, pod("b"), false, Writer::Cluster).unwrap();
        assert_eq!(by_cluster["metadata"]["uid"], "bed-chosen");
        let mut unnamed = pod("c");
        unnamed["metadata"].as_object_mut().unwrap().remove("uid");
        let assigned = store.put_by(Resource::Pods, unnamed, false, Writer::Cluster).unwrap();
        assert!(assigned["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    }

    #[test]
    fn stale_resource_version_conflicts() {
        let mut store = Store::new();
        let mut lease = json!({"metadata": {"namespace": "n", "name": "l"}, "spec": {}});
        let created = store.put(Resource::Leases, lease.clone(), true).unwrap();
        assert_eq!(store.put(Resource::Leases, lease.clone(), true).unwrap_err().code, 409);
        lease["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
        store.put(Resource::Leases, lease.clone(), false).unwrap();
        assert_eq!(store.put(Resource::Leases, lease, false).unwrap_err().code, 409);
    }

    #[test]
    fn history_is_compactable() {
        let mut store = Store::new();
        store.put(Resource::HttpRoutes, route("r", "/a"), false).unwrap();
        assert_eq!(store.changes_since(Resource::HttpRoutes, 0).len(), 1);
        store.compact();
        assert!(store.changes_since(Resource::HttpRoutes, 0).is_empty());
        assert_eq!(store.compacted_below(), store.resource_version());
        store.delete(Resource::HttpRoutes, "a", "r").unwrap();
        let changes = store.changes_since(Resource::HttpRoutes, 0);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, EventType::Deleted);
    }
}
