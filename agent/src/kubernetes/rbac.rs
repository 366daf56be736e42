//! Every Kubernetes API permission the agent uses, one constant per call site. The
//! watchers, the lease elector and the status writer name the constant they need (it is
//! in their error messages), and the RBAC test checks `daemonset/clusterrole.yaml`
//! against [`ALL`] minus [`NAMESPACED`], and `daemonset/role.yaml` against
//! [`NAMESPACED`]: everything used is granted and nothing granted is unused.

use std::fmt;

/// One (apiGroup, resource, verb) the agent's ServiceAccount needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission {
    /// "" for the core group.
    pub group: &'static str,
    /// Plural resource, with `/subresource` where one is used.
    pub resource: &'static str,
    pub verb: &'static str,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() { "core" } else { self.group };
        write!(f, "{} {}.{}", self.verb, self.resource, group)
    }
}

const fn p(group: &'static str, resource: &'static str, verb: &'static str) -> Permission {
    Permission { group, resource, verb }
}

/// The list + watch pair a watcher needs.
#[derive(Clone, Copy, Debug)]
pub struct WatchPermissions {
    pub list: Permission,
    pub watch: Permission,
}

const fn lw(group: &'static str, resource: &'static str) -> WatchPermissions {
    WatchPermissions { list: p(group, resource, "list"), watch: p(group, resource, "watch") }
}

pub const NAMESPACES: WatchPermissions = lw("", "namespaces");
pub const PODS: WatchPermissions = lw("", "pods");
pub const SERVICES: WatchPermissions = lw("", "services");
pub const ENDPOINT_SLICES: WatchPermissions = lw("discovery.k8s.io", "endpointslices");
pub const HTTP_ROUTES: WatchPermissions = lw("gateway.networking.k8s.io", "httproutes");
pub const GRPC_ROUTES: WatchPermissions = lw("gateway.networking.k8s.io", "grpcroutes");
pub const TLS_ROUTES: WatchPermissions = lw("gateway.networking.k8s.io", "tlsroutes");
pub const TCP_ROUTES: WatchPermissions = lw("gateway.networking.k8s.io", "tcproutes");
/// The mesh directory (written by the signer only).
pub const MESH_NODES: WatchPermissions = lw("ambit.dev", "meshnodes");
/// AuthorizationPolicies (all namespaces).
pub const AUTHORIZATION_POLICIES: WatchPermissions = lw("ambit.dev", "authorizationpolicies");
/// Reading a policy before writing its status, and replacing its status subresource.
pub const AUTHORIZATION_POLICY_GET: Permission = p("ambit.dev", "authorizationpolicies", "get");
pub const AUTHORIZATION_POLICY_STATUS_UPDATE: Permission = p("ambit.dev", "authorizationpolicies/status", "update");

/// Reading a route before writing its status (to keep other controllers' entries).
pub const HTTP_ROUTE_GET: Permission = p("gateway.networking.k8s.io", "httproutes", "get");
pub const GRPC_ROUTE_GET: Permission = p("gateway.networking.k8s.io", "grpcroutes", "get");
pub const TLS_ROUTE_GET: Permission = p("gateway.networking.k8s.io", "tlsroutes", "get");
pub const TCP_ROUTE_GET: Permission = p("gateway.networking.k8s.io", "tcproutes", "get");
/// Replacing a route's status subresource.
pub const HTTP_ROUTE_STATUS_UPDATE: Permission = p("gateway.networking.k8s.io", "httproutes/status", "update");
pub const GRPC_ROUTE_STATUS_UPDATE: Permission = p("gateway.networking.k8s.io", "grpcroutes/status", "update");
pub const TLS_ROUTE_STATUS_UPDATE: Permission = p("gateway.networking.k8s.io", "tlsroutes/status", "update");
pub const TCP_ROUTE_STATUS_UPDATE: Permission = p("gateway.networking.k8s.io", "tcproutes/status", "update");

/// The status-writer Lease.
pub const LEASE_GET: Permission = p("coordination.k8s.io", "leases", "get");
pub const LEASE_CREATE: Permission = p("coordination.k8s.io", "leases", "create");
pub const LEASE_UPDATE: Permission = p("coordination.k8s.io", "leases", "update");

/// The agent's own CertificateSigningRequests (cluster-scoped; names are random, so
/// not limited by name): created, followed with get + watch, deleted once answered.
pub const CSR_CREATE: Permission = p("certificates.k8s.io", "certificatesigningrequests", "create");
pub const CSR_GET: Permission = p("certificates.k8s.io", "certificatesigningrequests", "get");
pub const CSR_WATCH: Permission = p("certificates.k8s.io", "certificatesigningrequests", "watch");
pub const CSR_DELETE: Permission = p("certificates.k8s.io", "certificatesigningrequests", "delete");

/// The trust bundle ConfigMap in the agent's namespace, limited to its name.
pub const CONFIGMAP_GET: Permission = p("", "configmaps", "get");
pub const CONFIGMAP_WATCH: Permission = p("", "configmaps", "watch");

/// Every permission the agent uses.
pub const ALL: &[Permission] = &[
    NAMESPACES.list,
    NAMESPACES.watch,
    MESH_NODES.list,
    MESH_NODES.watch,
    AUTHORIZATION_POLICIES.list,
    AUTHORIZATION_POLICIES.watch,
    AUTHORIZATION_POLICY_GET,
    AUTHORIZATION_POLICY_STATUS_UPDATE,
    PODS.list,
    PODS.watch,
    SERVICES.list,
    SERVICES.watch,
    ENDPOINT_SLICES.list,
    ENDPOINT_SLICES.watch,
    HTTP_ROUTES.list,
    HTTP_ROUTES.watch,
    GRPC_ROUTES.list,
    GRPC_ROUTES.watch,
    TLS_ROUTES.list,
    TLS_ROUTES.watch,
    TCP_ROUTES.list,
    TCP_ROUTES.watch,
    HTTP_ROUTE_GET,
    GRPC_ROUTE_GET,
    TLS_ROUTE_GET,
    TCP_ROUTE_GET,
    HTTP_ROUTE_STATUS_UPDATE,
    GRPC_ROUTE_STATUS_UPDATE,
    TLS_ROUTE_STATUS_UPDATE,
    TCP_ROUTE_STATUS_UPDATE,
    LEASE_GET,
    LEASE_CREATE,
    LEASE_UPDATE,
    CSR_CREATE,
    CSR_GET,
    CSR_WATCH,
    CSR_DELETE,
    CONFIGMAP_GET,
    CONFIGMAP_WATCH,
];

/// The permissions granted only in the agent's own namespace (a Role, not the
/// ClusterRole): the status-writer Lease and the trust bundle ConfigMap. `get` and `update` are further limited to the
/// Lease's name ([`LEASE_NAME`](super::lease::LEASE_NAME)); `create` cannot be.
pub const NAMESPACED: &[Permission] = &[LEASE_GET, LEASE_CREATE, LEASE_UPDATE, CONFIGMAP_GET, CONFIGMAP_WATCH];

/// The namespaced permissions limited to the trust bundle's name
/// ([`TRUST_BUNDLE_CONFIGMAP`](crate::signer::TRUST_BUNDLE_CONFIGMAP)).
pub const TRUST_BUNDLE_NAMED: &[Permission] = &[CONFIGMAP_GET, CONFIGMAP_WATCH];
