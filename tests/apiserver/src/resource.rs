//! The resource types the fake API server serves and how their URLs look.

use std::fmt;

/// A resource type the fake API server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Namespaces,
    Pods,
    Services,
    EndpointSlices,
    HttpRoutes,
    GrpcRoutes,
    Leases,
    /// Ambit's mesh directory (`ambit.dev/v1alpha1`, cluster-scoped).
    MeshNodes,
    /// `certificates.k8s.io/v1` CertificateSigningRequests (cluster-scoped).
    CertificateSigningRequests,
    ConfigMaps,
    /// Ambit's AuthorizationPolicies (`ambit.dev/v1alpha1`, namespaced, with status).
    AuthorizationPolicies,
}

impl Resource {
    /// Every resource type served.
    pub const ALL: [Resource; 11] = [
        Resource::Namespaces,
        Resource::Pods,
        Resource::Services,
        Resource::EndpointSlices,
        Resource::HttpRoutes,
        Resource::GrpcRoutes,
        Resource::Leases,
        Resource::MeshNodes,
        Resource::CertificateSigningRequests,
        Resource::ConfigMaps,
        Resource::AuthorizationPolicies,
    ];

    /// The API group ("" for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Resource::Namespaces | Resource::Pods | Resource::Services | Resource::ConfigMaps => "",
            Resource::EndpointSlices => "discovery.k8s.io",
            Resource::CertificateSigningRequests => "certificates.k8s.io",
            Resource::HttpRoutes | Resource::GrpcRoutes => "gateway.networking.k8s.io",
            Resource::Leases => "coordination.k8s.io",
            Resource::MeshNodes | Resource::AuthorizationPolicies => "ambit.dev",
        }
    }

    /// `apiVersion` of objects of this type.
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Namespaces | Resource::Pods | Resource::Services | Resource::ConfigMaps => "v1",
            Resource::EndpointSlices => "discovery.k8s.io/v1",
            Resource::CertificateSigningRequests => "certificates.k8s.io/v1",
            Resource::HttpRoutes | Resource::GrpcRoutes => "gateway.networking.k8s.io/v1",
            Resource::Leases => "coordination.k8s.io/v1",
            Resource::MeshNodes | Resource::AuthorizationPolicies => "ambit.dev/v1alpha1",
        }
    }

    /// `kind` of objects of this type.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Namespaces => "Namespace",
            Resource::Pods => "Pod",
            Resource::Services => "Service",
            Resource::EndpointSlices => "EndpointSlice",
            Resource::HttpRoutes => "HTTPRoute",
            Resource::GrpcRoutes => "GRPCRoute",
            Resource::Leases => "Lease",
            Resource::MeshNodes => "MeshNode",
            Resource::CertificateSigningRequests => "CertificateSigningRequest",
            Resource::ConfigMaps => "ConfigMap",
            Resource::AuthorizationPolicies => "AuthorizationPolicy",
        }
    }

    /// The plural name used in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Namespaces => "namespaces",
            Resource::Pods => "pods",
            Resource::Services => "services",
            Resource::EndpointSlices => "endpointslices",
            Resource::HttpRoutes => "httproutes",
            Resource::GrpcRoutes => "grpcroutes",
            Resource::Leases => "leases",
            Resource::MeshNodes => "meshnodes",
            Resource::CertificateSigningRequests => "certificatesigningrequests",
            Resource::ConfigMaps => "configmaps",
            Resource::AuthorizationPolicies => "authorizationpolicies",
        }
    }

    /// The short names `kubectl` accepts (`ns`, `svc`, ...).
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Resource::Namespaces => &["ns"],
            Resource::Pods => &["po"],
            Resource::Services => &["svc"],
            Resource::CertificateSigningRequests => &["csr"],
            Resource::ConfigMaps => &["cm"],
            _ => &[],
        }
    }

    /// Whether the type is a custom resource (defined by a CRD) in a real cluster.
    pub fn is_custom(self) -> bool {
        matches!(self.group(), "gateway.networking.k8s.io" | "ambit.dev")
    }

    /// Whether the type has a `/status` subresource served here.
    pub fn has_status_subresource(self) -> bool {
        matches!(self, Resource::HttpRoutes | Resource::GrpcRoutes | Resource::CertificateSigningRequests | Resource::AuthorizationPolicies)
    }

    /// The subresources served besides `status` (CSRs' `approval`).
    pub fn other_subresources(self) -> &'static [&'static str] {
        match self {
            Resource::CertificateSigningRequests => &["approval"],
            _ => &[],
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Resource::Namespaces | Resource::MeshNodes | Resource::CertificateSigningRequests)
    }

    /// Whether writes to the object's spec bump `metadata.generation` (as for CRDs and
    /// most built-in types with a spec).
    pub fn has_generation(self) -> bool {
        matches!(self, Resource::HttpRoutes | Resource::GrpcRoutes | Resource::Services | Resource::AuthorizationPolicies)
    }

    /// The resource type of an object from its `apiVersion` and `kind`.
    pub fn of(api_version: &str, kind: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.api_version() == api_version && r.kind() == kind)
    }

    fn from_path(prefix: &str, plural: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.plural() == plural && r.prefix() == prefix)
    }

    /// `/api/v1` or `/apis/GROUP/v1`.
    pub fn prefix(self) -> String {
        if self.group().is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}", self.api_version())
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

/// A parsed request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub resource: Resource,
    /// The namespace in the path, if any (cluster-wide lists have none).
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<String>,
}

impl Target {
    /// Parses `/api/v1/...` and `/apis/GROUP/VERSION/...` paths.
    pub fn parse(path: &str) -> Option<Target> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match segments.as_slice() {
            ["api", "v1", rest @ ..] => ("/api/v1".to_string(), rest),
            ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, plural, rest @ ..] => (Some(ns.to_string()), prepend(plural, rest)),
            other => (None, other.to_vec()),
        };
        let (plural, name, subresource) = match rest.as_slice() {
            [plural] => (*plural, None, None),
            [plural, name] => (*plural, Some(name.to_string()), None),
            [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
            _ => return None,
        };
        let resource = Resource::from_path(&prefix, plural);
        match (resource, namespace) {
            (Some(resource), namespace) if resource.namespaced() || namespace.is_none() => {
                Some(Target { resource, namespace: namespace.filter(|_| resource.namespaced()), name, subresource })
            }
            _ => None,
        }
    }
}

fn prepend<'a>(first: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![first];
    v.extend_from_slice(rest);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_paths_kube_uses() {
        let t = Target::parse("/api/v1/pods").unwrap();
        assert_eq!((t.resource, t.namespace, t.name), (Resource::Pods, None, None));
        let t = Target::parse("/api/v1/namespaces").unwrap();
        assert_eq!(t.resource, Resource::Namespaces);
        let t = Target::parse("/apis/coordination.k8s.io/v1/namespaces/ambit/leases/x").unwrap();
        assert_eq!((t.resource, t.namespace.as_deref(), t.name.as_deref()), (Resource::Leases, Some("ambit"), Some("x")));
        let t = Target::parse("/apis/gateway.networking.k8s.io/v1/namespaces/a/httproutes/r/status").unwrap();
        assert_eq!((t.resource, t.subresource.as_deref()), (Resource::HttpRoutes, Some("status")));
        let t = Target::parse("/apis/discovery.k8s.io/v1/endpointslices").unwrap();
        assert_eq!(t.resource, Resource::EndpointSlices);
        assert!(Target::parse("/apis/apps/v1/deployments").is_none());
        assert!(Target::parse("/version").is_none());
    }
}
