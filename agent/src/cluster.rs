//! The Kubernetes objects the agent reads, held in one store keyed by namespace/name.
//!
//! Standalone mode fills it from a manifests directory; Kubernetes mode will fill it from
//! watches. Translation reads it and nothing else.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use gateway_api::apis::experimental::tcproutes::TcpRoute;
use gateway_api::apis::experimental::tlsroutes::TlsRoute;
use gateway_api::apis::standard::grpcroutes::GrpcRoute;
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::authz::PolicyObject;
use crate::directory::MeshNode;
use crate::{MESH_ENABLED, MESH_LABEL};

/// Namespace used for namespaced objects that name none (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Label on an EndpointSlice naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Identifies a namespaced object. Cluster-scoped objects (Namespaces) use an empty namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// The kinds of object the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    HttpRoute,
    GrpcRoute,
    TlsRoute,
    TcpRoute,
    MeshNode,
    AuthorizationPolicy,
}

impl ObjectKind {
    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Namespace => "Namespace",
            ObjectKind::Pod => "Pod",
            ObjectKind::Service => "Service",
            ObjectKind::EndpointSlice => "EndpointSlice",
            ObjectKind::HttpRoute => "HTTPRoute",
            ObjectKind::GrpcRoute => "GRPCRoute",
            ObjectKind::TlsRoute => "TLSRoute",
            ObjectKind::TcpRoute => "TCPRoute",
            ObjectKind::MeshNode => "MeshNode",
            ObjectKind::AuthorizationPolicy => "AuthorizationPolicy",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object of a kind the store holds.
#[derive(Clone, Debug)]
pub enum ClusterObject {
    Namespace(Namespace),
    Pod(Pod),
    Service(Service),
    EndpointSlice(EndpointSlice),
    HttpRoute(HttpRoute),
    GrpcRoute(GrpcRoute),
    TlsRoute(TlsRoute),
    TcpRoute(TcpRoute),
    MeshNode(MeshNode),
    AuthorizationPolicy(PolicyObject),
}

/// Why an object cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("{0} has no metadata.name")]
    MissingName(ObjectKind),
}

impl ClusterObject {
    pub fn kind(&self) -> ObjectKind {
        match self {
            ClusterObject::Namespace(_) => ObjectKind::Namespace,
            ClusterObject::Pod(_) => ObjectKind::Pod,
            ClusterObject::Service(_) => ObjectKind::Service,
            ClusterObject::EndpointSlice(_) => ObjectKind::EndpointSlice,
            ClusterObject::HttpRoute(_) => ObjectKind::HttpRoute,
            ClusterObject::GrpcRoute(_) => ObjectKind::GrpcRoute,
            ClusterObject::TlsRoute(_) => ObjectKind::TlsRoute,
            ClusterObject::TcpRoute(_) => ObjectKind::TcpRoute,
            ClusterObject::MeshNode(_) => ObjectKind::MeshNode,
            ClusterObject::AuthorizationPolicy(_) => ObjectKind::AuthorizationPolicy,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            ClusterObject::Namespace(o) => &o.metadata,
            ClusterObject::Pod(o) => &o.metadata,
            ClusterObject::Service(o) => &o.metadata,
            ClusterObject::EndpointSlice(o) => &o.metadata,
            ClusterObject::HttpRoute(o) => &o.metadata,
            ClusterObject::GrpcRoute(o) => &o.metadata,
            ClusterObject::TlsRoute(o) => &o.metadata,
            ClusterObject::TcpRoute(o) => &o.metadata,
            ClusterObject::MeshNode(o) => &o.metadata,
            ClusterObject::AuthorizationPolicy(o) => &o.metadata,
        }
    }

    /// The store key: `namespace/name`, the namespace defaulting to `default` for
    /// namespaced kinds and empty for Namespaces.
    pub fn key(&self) -> Result<ObjectKey, ObjectError> {
        let meta = self.metadata();
        let name = meta.name.as_deref().filter(|n| !n.is_empty()).ok_or(ObjectError::MissingName(self.kind()))?;
        let namespace = match self.kind() {
            ObjectKind::Namespace | ObjectKind::MeshNode => String::new(),
            _ => meta.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        };
        Ok(ObjectKey::new(namespace, name))
    }

    /// Fills in the defaulted namespace so that stored objects always carry one.
    fn normalise(&mut self, key: &ObjectKey) {
        if matches!(self.kind(), ObjectKind::Namespace | ObjectKind::MeshNode) {
            return;
        }
        let meta = match self {
            ClusterObject::Namespace(o) => &mut o.metadata,
            ClusterObject::Pod(o) => &mut o.metadata,
            ClusterObject::Service(o) => &mut o.metadata,
            ClusterObject::EndpointSlice(o) => &mut o.metadata,
            ClusterObject::HttpRoute(o) => &mut o.metadata,
            ClusterObject::GrpcRoute(o) => &mut o.metadata,
            ClusterObject::TlsRoute(o) => &mut o.metadata,
            ClusterObject::TcpRoute(o) => &mut o.metadata,
            ClusterObject::MeshNode(o) => &mut o.metadata,
            ClusterObject::AuthorizationPolicy(o) => &mut o.metadata,
        };
        meta.namespace = Some(key.namespace.clone());
    }
}

/// Every object translation needs, keyed by namespace/name (Namespaces by name).
///
/// Objects are reference-counted: a clone of the state (the feed publishes one per
/// change) copies the maps' keys and pointers and shares every object, so a published
/// snapshot costs no second copy of the objects. Mutate one with [`Arc::make_mut`].
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    pub pods: BTreeMap<ObjectKey, Arc<Pod>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    pub http_routes: BTreeMap<ObjectKey, Arc<HttpRoute>>,
    pub grpc_routes: BTreeMap<ObjectKey, Arc<GrpcRoute>>,
    pub tls_routes: BTreeMap<ObjectKey, Arc<TlsRoute>>,
    pub tcp_routes: BTreeMap<ObjectKey, Arc<TcpRoute>>,
    /// The mesh directory, by node name (Kubernetes mode; see [`crate::directory`]).
    pub mesh_nodes: BTreeMap<String, Arc<MeshNode>>,
    /// AuthorizationPolicies, their specs unchecked (see [`crate::authz`]).
    pub authorization_policies: BTreeMap<ObjectKey, Arc<PolicyObject>>,
}

impl ClusterState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces an object; returns its key.
    pub fn insert(&mut self, mut object: ClusterObject) -> Result<ObjectKey, ObjectError> {
        let key = object.key()?;
        object.normalise(&key);
        match object {
            ClusterObject::Namespace(o) => {
                self.namespaces.insert(key.name.clone(), Arc::new(o));
            }
            ClusterObject::Pod(o) => {
                self.pods.insert(key.clone(), Arc::new(o));
            }
            ClusterObject::Service(o) => {
                self.services.insert(key.clone(), Arc::new(o));
            }
            ClusterObject::EndpointSlice(o) => {
                self.endpoint_slices.insert(key.clone(), Arc::new(o));
            }
            ClusterObject::HttpRoute(o) => {
                self.http_routes.insert(key.clone(), Arc::new(o));
            }
            ClusterObject::GrpcRoute(o) => {
                self.grpc_routes.insert(key.clone(), Arc::new(o));
            }
            ClusterObject::TlsRoute(o) => {
                self.tls_routes.insert(key.clone(), Arc::new(o));
            }
            ClusterObject::TcpRoute(o) => {
                self.tcp_routes.insert(key.clone(), Arc::new(o));
            }
            ClusterObject::MeshNode(o) => {
                self.mesh_nodes.insert(key.name.clone(), Arc::new(o));
            }
            ClusterObject::AuthorizationPolicy(o) => {
                self.authorization_policies.insert(key.clone(), Arc::new(o));
            }
        }
        Ok(key)
    }

    /// Removes the stored object with the same kind and key; true if one was stored.
    pub fn remove(&mut self, object: &ClusterObject) -> Result<bool, ObjectError> {
        let key = object.key()?;
        Ok(self.remove_key(object.kind(), &key))
    }

    /// Removes the object of `kind` at `key`; true if one was stored.
    pub fn remove_key(&mut self, kind: ObjectKind, key: &ObjectKey) -> bool {
        match kind {
            ObjectKind::Namespace => self.namespaces.remove(&key.name).is_some(),
            ObjectKind::Pod => self.pods.remove(key).is_some(),
            ObjectKind::Service => self.services.remove(key).is_some(),
            ObjectKind::EndpointSlice => self.endpoint_slices.remove(key).is_some(),
            ObjectKind::HttpRoute => self.http_routes.remove(key).is_some(),
            ObjectKind::GrpcRoute => self.grpc_routes.remove(key).is_some(),
            ObjectKind::TlsRoute => self.tls_routes.remove(key).is_some(),
            ObjectKind::TcpRoute => self.tcp_routes.remove(key).is_some(),
            ObjectKind::MeshNode => self.mesh_nodes.remove(&key.name).is_some(),
            ObjectKind::AuthorizationPolicy => self.authorization_policies.remove(key).is_some(),
        }
    }

    /// Number of stored objects of every kind.
    pub fn len(&self) -> usize {
        self.namespaces.len()
            + self.pods.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.http_routes.len()
            + self.grpc_routes.len()
            + self.tls_routes.len()
            + self.tcp_routes.len()
            + self.mesh_nodes.len()
            + self.authorization_policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the namespace exists and carries `ambit.dev/mesh: enabled`.
    pub fn namespace_enrolled(&self, namespace: &str) -> bool {
        self.namespaces
            .get(namespace)
            .and_then(|ns| ns.metadata.labels.as_ref())
            .and_then(|labels| labels.get(MESH_LABEL))
            .is_some_and(|v| v == MESH_ENABLED)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&ObjectKey::new(namespace, name)).map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: Option<&str>, name: Option<&str>) -> ClusterObject {
        let mut p = Pod::default();
        p.metadata.namespace = ns.map(str::to_string);
        p.metadata.name = name.map(str::to_string);
        ClusterObject::Pod(p)
    }

    #[test]
    fn insert_defaults_namespace_and_remove_by_object() {
        let mut state = ClusterState::new();
        let key = state.insert(pod(None, Some("a"))).unwrap();
        assert_eq!(key, ObjectKey::new("default", "a"));
        assert_eq!(state.pods[&key].metadata.namespace.as_deref(), Some("default"));
        state.insert(pod(Some("x"), Some("a"))).unwrap();
        assert_eq!(state.len(), 2);
        assert!(state.remove(&pod(Some("x"), Some("a"))).unwrap());
        assert!(!state.remove(&pod(Some("x"), Some("a"))).unwrap());
        assert_eq!(state.len(), 1);
    }

    #[test]
    fn missing_name_is_an_error() {
        let mut state = ClusterState::new();
        assert_eq!(state.insert(pod(Some("x"), None)), Err(ObjectError::MissingName(ObjectKind::Pod)));
        assert!(state.is_empty());
    }

    #[test]
    fn namespace_enrollment_reads_the_label() {
        let mut state = ClusterState::new();
        let mut ns = Namespace::default();
        ns.metadata.name = Some("mesh".into());
        ns.metadata.labels = Some([(MESH_LABEL.to_string(), MESH_ENABLED.to_string())].into());
        state.insert(ClusterObject::Namespace(ns)).unwrap();
        let mut other = Namespace::default();
        other.metadata.name = Some("plain".into());
        state.insert(ClusterObject::Namespace(other)).unwrap();
        assert!(state.namespace_enrolled("mesh"));
        assert!(!state.namespace_enrolled("plain"));
        assert!(!state.namespace_enrolled("missing"));
    }
}
