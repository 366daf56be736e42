//! The Kubernetes objects the agent reads, held in one store keyed by namespace/name.
//!
//! Standalone mode fills it from a manifests directory; Kubernetes mode fills it from
//! watches. Translation reads it and nothing else.
//!
//! Services, EndpointSlices and `MeshNode`s, the kinds a large cluster has many of, are
//! stored in a compact form holding only what is read ([`service`], [`endpoint_slice`],
//! [`mesh_node`]): addresses parsed, names repeated across objects shared ([`intern`]).
//! They are converted when they enter the store ([`ClusterObject::service`] and its
//! siblings), so a whole object is never held longer than its conversion.

mod endpoint_slice;
mod intern;
mod mesh_node;
mod objects;
mod service;

pub use endpoint_slice::{SlicePort, StoredSlice};
pub use intern::intern;
pub use mesh_node::{MeshWorkload, StoredMeshNode};
pub use objects::Objects;
pub use service::{ClusterIps, InvalidValue, StoredService, StoredServicePort};

use std::fmt;

use gateway_api::apis::experimental::tcproutes::TcpRoute;
use gateway_api::apis::experimental::tlsroutes::TlsRoute;
use gateway_api::apis::experimental::grpcroutes::GrpcRoute;
use gateway_api::apis::experimental::httproutes::HttpRoute;
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
    /// Every kind, in the store's order.
    pub const ALL: [ObjectKind; 10] = [
        ObjectKind::Namespace,
        ObjectKind::Pod,
        ObjectKind::Service,
        ObjectKind::EndpointSlice,
        ObjectKind::HttpRoute,
        ObjectKind::GrpcRoute,
        ObjectKind::TlsRoute,
        ObjectKind::TcpRoute,
        ObjectKind::MeshNode,
        ObjectKind::AuthorizationPolicy,
    ];

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
///
/// Only in passing, from a watch event or a manifest to the store (which holds each
/// kind in its own map): the size of its largest variant is not multiplied.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ClusterObject {
    Namespace(Namespace),
    Pod(Pod),
    Service(Named<StoredService>),
    EndpointSlice(Named<StoredSlice>),
    HttpRoute(HttpRoute),
    GrpcRoute(GrpcRoute),
    TlsRoute(TlsRoute),
    TcpRoute(TcpRoute),
    MeshNode(Named<StoredMeshNode>),
    AuthorizationPolicy(PolicyObject),
}

/// A stored form with the name and namespace it came with (they become its key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named<T> {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub object: T,
}

impl<T> Named<T> {
    fn new(meta: &mut ObjectMeta, object: T) -> Self {
        Self { namespace: meta.namespace.take(), name: meta.name.take(), object }
    }
}

/// Why an object cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("{0} has no metadata.name")]
    MissingName(ObjectKind),
}

impl ClusterObject {
    /// A Service, converted to its stored form.
    pub fn service(mut svc: Service) -> Self {
        let object = StoredService::from(&svc);
        ClusterObject::Service(Named::new(&mut svc.metadata, object))
    }

    /// An EndpointSlice, converted to its stored form.
    pub fn endpoint_slice(mut slice: EndpointSlice) -> Self {
        let object = StoredSlice::from(&slice);
        ClusterObject::EndpointSlice(Named::new(&mut slice.metadata, object))
    }

    /// A `MeshNode`, converted to its stored form.
    pub fn mesh_node(mut node: MeshNode) -> Self {
        let object = StoredMeshNode::from(&node);
        ClusterObject::MeshNode(Named::new(&mut node.metadata, object))
    }

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

    /// The namespace and name it came with.
    fn names(&self) -> (Option<&str>, Option<&str>) {
        fn of(meta: &ObjectMeta) -> (Option<&str>, Option<&str>) {
            (meta.namespace.as_deref(), meta.name.as_deref())
        }
        fn named<T>(n: &Named<T>) -> (Option<&str>, Option<&str>) {
            (n.namespace.as_deref(), n.name.as_deref())
        }
        match self {
            ClusterObject::Namespace(o) => of(&o.metadata),
            ClusterObject::Pod(o) => of(&o.metadata),
            ClusterObject::Service(o) => named(o),
            ClusterObject::EndpointSlice(o) => named(o),
            ClusterObject::HttpRoute(o) => of(&o.metadata),
            ClusterObject::GrpcRoute(o) => of(&o.metadata),
            ClusterObject::TlsRoute(o) => of(&o.metadata),
            ClusterObject::TcpRoute(o) => of(&o.metadata),
            ClusterObject::MeshNode(o) => named(o),
            ClusterObject::AuthorizationPolicy(o) => of(&o.metadata),
        }
    }

    /// The store key: `namespace/name`, the namespace defaulting to `default` for
    /// namespaced kinds and empty for Namespaces.
    pub fn key(&self) -> Result<ObjectKey, ObjectError> {
        let (namespace, name) = self.names();
        let name = name.filter(|n| !n.is_empty()).ok_or(ObjectError::MissingName(self.kind()))?;
        let namespace = match self.kind() {
            ObjectKind::Namespace | ObjectKind::MeshNode => "",
            _ => namespace.filter(|n| !n.is_empty()).unwrap_or(DEFAULT_NAMESPACE),
        };
        Ok(ObjectKey::new(namespace, name))
    }

    /// Fills in the defaulted namespace so that stored objects with metadata always
    /// carry one (the compact forms keep theirs in the key only).
    fn normalise(&mut self, key: &ObjectKey) {
        let meta = match self {
            ClusterObject::Pod(o) => &mut o.metadata,
            ClusterObject::HttpRoute(o) => &mut o.metadata,
            ClusterObject::GrpcRoute(o) => &mut o.metadata,
            ClusterObject::TlsRoute(o) => &mut o.metadata,
            ClusterObject::TcpRoute(o) => &mut o.metadata,
            ClusterObject::AuthorizationPolicy(o) => &mut o.metadata,
            ClusterObject::Namespace(_) | ClusterObject::Service(_) | ClusterObject::EndpointSlice(_) | ClusterObject::MeshNode(_) => {
                return
            }
        };
        meta.namespace = Some(key.namespace.clone());
    }
}

/// Every object translation needs, keyed by namespace/name (Namespaces by name).
///
/// Each kind's map and each object are reference-counted: a clone of the state (the
/// feed publishes one per change) copies ten pointers, and a change to one kind copies
/// that kind's map (its keys and pointers, no object) only while a published snapshot
/// still shares it. Mutate with [`Objects::make_mut`], then [`std::sync::Arc::make_mut`] on the object.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    pub namespaces: Objects<String, Namespace>,
    pub pods: Objects<ObjectKey, Pod>,
    pub services: Objects<ObjectKey, StoredService>,
    pub endpoint_slices: Objects<ObjectKey, StoredSlice>,
    pub http_routes: Objects<ObjectKey, HttpRoute>,
    pub grpc_routes: Objects<ObjectKey, GrpcRoute>,
    pub tls_routes: Objects<ObjectKey, TlsRoute>,
    pub tcp_routes: Objects<ObjectKey, TcpRoute>,
    /// The mesh directory, by node name (Kubernetes mode; see [`crate::directory`]).
    pub mesh_nodes: Objects<String, StoredMeshNode>,
    /// AuthorizationPolicies, their specs unchecked (see [`crate::authz`]).
    pub authorization_policies: Objects<ObjectKey, PolicyObject>,
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
                self.namespaces.put(key.name.clone(), o);
            }
            ClusterObject::Pod(o) => {
                self.pods.put(key.clone(), o);
            }
            ClusterObject::Service(o) => {
                self.services.put(key.clone(), o.object);
            }
            ClusterObject::EndpointSlice(o) => {
                self.endpoint_slices.put(key.clone(), o.object);
            }
            ClusterObject::HttpRoute(o) => {
                self.http_routes.put(key.clone(), o);
            }
            ClusterObject::GrpcRoute(o) => {
                self.grpc_routes.put(key.clone(), o);
            }
            ClusterObject::TlsRoute(o) => {
                self.tls_routes.put(key.clone(), o);
            }
            ClusterObject::TcpRoute(o) => {
                self.tcp_routes.put(key.clone(), o);
            }
            ClusterObject::MeshNode(o) => {
                self.mesh_nodes.put(key.name.clone(), o.object);
            }
            ClusterObject::AuthorizationPolicy(o) => {
                self.authorization_policies.put(key.clone(), o);
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
            ObjectKind::Namespace => self.namespaces.take(&key.name),
            ObjectKind::Pod => self.pods.take(key),
            ObjectKind::Service => self.services.take(key),
            ObjectKind::EndpointSlice => self.endpoint_slices.take(key),
            ObjectKind::HttpRoute => self.http_routes.take(key),
            ObjectKind::GrpcRoute => self.grpc_routes.take(key),
            ObjectKind::TlsRoute => self.tls_routes.take(key),
            ObjectKind::TcpRoute => self.tcp_routes.take(key),
            ObjectKind::MeshNode => self.mesh_nodes.take(&key.name),
            ObjectKind::AuthorizationPolicy => self.authorization_policies.take(key),
        }
    }

    /// Replaces every object of `kind` with those `from` holds of it.
    pub fn replace_kind(&mut self, kind: ObjectKind, from: ClusterState) {
        match kind {
            ObjectKind::Namespace => self.namespaces = from.namespaces,
            ObjectKind::Pod => self.pods = from.pods,
            ObjectKind::Service => self.services = from.services,
            ObjectKind::EndpointSlice => self.endpoint_slices = from.endpoint_slices,
            ObjectKind::HttpRoute => self.http_routes = from.http_routes,
            ObjectKind::GrpcRoute => self.grpc_routes = from.grpc_routes,
            ObjectKind::TlsRoute => self.tls_routes = from.tls_routes,
            ObjectKind::TcpRoute => self.tcp_routes = from.tcp_routes,
            ObjectKind::MeshNode => self.mesh_nodes = from.mesh_nodes,
            ObjectKind::AuthorizationPolicy => self.authorization_policies = from.authorization_policies,
        }
    }

    /// Number of stored objects of `kind`.
    pub fn count(&self, kind: ObjectKind) -> usize {
        match kind {
            ObjectKind::Namespace => self.namespaces.len(),
            ObjectKind::Pod => self.pods.len(),
            ObjectKind::Service => self.services.len(),
            ObjectKind::EndpointSlice => self.endpoint_slices.len(),
            ObjectKind::HttpRoute => self.http_routes.len(),
            ObjectKind::GrpcRoute => self.grpc_routes.len(),
            ObjectKind::TlsRoute => self.tls_routes.len(),
            ObjectKind::TcpRoute => self.tcp_routes.len(),
            ObjectKind::MeshNode => self.mesh_nodes.len(),
            ObjectKind::AuthorizationPolicy => self.authorization_policies.len(),
        }
    }

    /// Adds (or replaces with) the objects of `kind` that `from` holds, sharing them.
    pub fn extend_kind(&mut self, kind: ObjectKind, from: &ClusterState) {
        fn extend<K: Ord + Clone, V>(to: &mut Objects<K, V>, from: &Objects<K, V>) {
            if from.is_empty() {
                return;
            }
            let map = to.make_mut();
            map.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        match kind {
            ObjectKind::Namespace => extend(&mut self.namespaces, &from.namespaces),
            ObjectKind::Pod => extend(&mut self.pods, &from.pods),
            ObjectKind::Service => extend(&mut self.services, &from.services),
            ObjectKind::EndpointSlice => extend(&mut self.endpoint_slices, &from.endpoint_slices),
            ObjectKind::HttpRoute => extend(&mut self.http_routes, &from.http_routes),
            ObjectKind::GrpcRoute => extend(&mut self.grpc_routes, &from.grpc_routes),
            ObjectKind::TlsRoute => extend(&mut self.tls_routes, &from.tls_routes),
            ObjectKind::TcpRoute => extend(&mut self.tcp_routes, &from.tcp_routes),
            ObjectKind::MeshNode => extend(&mut self.mesh_nodes, &from.mesh_nodes),
            ObjectKind::AuthorizationPolicy => extend(&mut self.authorization_policies, &from.authorization_policies),
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

    pub fn service(&self, namespace: &str, name: &str) -> Option<&StoredService> {
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
