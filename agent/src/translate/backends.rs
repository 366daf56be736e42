//! Resolving backendRefs (and mirror backendRefs) to Service ports.

use std::sync::Arc;

use ambit_proxy_core::routes::{BackendTarget, ServiceBackend};

use super::services::ServiceIndex;
use super::spec::BackendRefSpec;
use super::status::Reason;

/// A backendRef that could not be resolved, for the ResolvedRefs condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefProblem {
    pub reason: Reason,
    pub message: String,
}

/// Whether a group/kind pair names a core Service (group "" or "core", kind Service; both default).
pub fn is_service(group: Option<&str>, kind: Option<&str>) -> bool {
    matches!(group.unwrap_or(""), "" | "core") && kind.unwrap_or("Service") == "Service"
}

/// Resolves a backendRef of a route in `route_ns`. Cross-namespace references are
/// allowed (GEP-1294 mesh routing). Failures give an Invalid target (requests to it get
/// 500) and a [`RefProblem`].
pub fn resolve(services: &ServiceIndex, route_ns: &str, backend: &BackendRefSpec, problems: &mut Vec<RefProblem>) -> BackendTarget {
    match try_resolve(services, route_ns, backend) {
        Ok(target) => target,
        Err(problem) => {
            let reason: Arc<str> = problem.message.as_str().into();
            problems.push(problem);
            BackendTarget::Invalid { reason }
        }
    }
}

fn try_resolve(services: &ServiceIndex, route_ns: &str, backend: &BackendRefSpec) -> Result<BackendTarget, RefProblem> {
    let namespace = backend.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(route_ns);
    let what = format!("backendRef {namespace}/{}", backend.name);
    if !is_service(backend.group.as_deref(), backend.kind.as_deref()) {
        return Err(RefProblem {
            reason: Reason::InvalidKind,
            message: format!(
                "{what}: kind {}/{} is not supported (only core Services)",
                backend.group.as_deref().unwrap_or(""),
                backend.kind.as_deref().unwrap_or("Service")
            ),
        });
    }
    let Some(port) = backend.port else {
        return Err(RefProblem { reason: Reason::BackendNotFound, message: format!("{what}: port is required for a Service") });
    };
    let Some(service) = services.get(namespace, &backend.name) else {
        return Err(RefProblem { reason: Reason::BackendNotFound, message: format!("{what}: Service not found") });
    };
    let Some(info) = u16::try_from(port).ok().and_then(|p| service.port(p)) else {
        return Err(RefProblem { reason: Reason::BackendNotFound, message: format!("{what}: Service has no port {port}") });
    };
    if !info.tcp {
        return Err(RefProblem {
            reason: Reason::UnsupportedProtocol,
            message: format!("{what}: port {port} is not a TCP port"),
        });
    }
    Ok(BackendTarget::Service(ServiceBackend {
        service: service.service.clone(),
        port: info.port,
        protocol: info.protocol,
        endpoints: info.endpoints.clone(),
    }))
}
