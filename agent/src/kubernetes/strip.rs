//! Trimming watched objects to what translation reads before they are stored (see the
//! module documentation of [`super`] for what is kept per kind).

use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cluster::ClusterObject;

/// Annotations with this prefix are kept (e.g. the pod opt-out `ambit.dev/mesh`).
const KEPT_ANNOTATION_PREFIX: &str = "ambit.dev/";

/// Keeps name, namespace, uid, generation, resourceVersion, labels and `ambit.dev/*`
/// annotations.
pub fn strip_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.generate_name = None;
    meta.self_link = None;
    meta.creation_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k.starts_with(KEPT_ANNOTATION_PREFIX));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Namespace: metadata only.
pub fn namespace(mut ns: Namespace) -> Namespace {
    strip_meta(&mut ns.metadata);
    ns.spec = None;
    ns.status = None;
    ns
}

/// Pod: metadata, `spec.nodeName`, `spec.serviceAccountName`, `status.phase`,
/// `status.qosClass`, `status.podIP(s)`, `status.hostIP(s)`.
pub fn pod(mut pod: Pod) -> Pod {
    strip_meta(&mut pod.metadata);
    pod.spec = pod.spec.map(|spec| PodSpec {
        node_name: spec.node_name,
        service_account_name: spec.service_account_name,
        host_network: spec.host_network,
        ..PodSpec::default()
    });
    pod.status = pod.status.map(|status| PodStatus {
        phase: status.phase,
        qos_class: status.qos_class,
        pod_ip: status.pod_ip,
        pod_ips: status.pod_ips,
        host_ip: status.host_ip,
        host_ips: status.host_ips,
        ..PodStatus::default()
    });
    pod
}

/// Strips any stored kind; routes keep metadata and spec (their status is read fresh by
/// the status writer, never from the store). Services, EndpointSlices and `MeshNode`s
/// are already in their compact stored form (see [`crate::cluster`]).
pub fn object(object: ClusterObject) -> ClusterObject {
    match object {
        ClusterObject::Namespace(o) => ClusterObject::Namespace(namespace(o)),
        ClusterObject::Pod(o) => ClusterObject::Pod(pod(o)),
        compact @ (ClusterObject::Service(_) | ClusterObject::EndpointSlice(_) | ClusterObject::MeshNode(_)) => compact,
        ClusterObject::HttpRoute(mut o) => {
            strip_meta(&mut o.metadata);
            o.status = None;
            ClusterObject::HttpRoute(o)
        }
        ClusterObject::GrpcRoute(mut o) => {
            strip_meta(&mut o.metadata);
            o.status = None;
            ClusterObject::GrpcRoute(o)
        }
        ClusterObject::TlsRoute(mut o) => {
            strip_meta(&mut o.metadata);
            o.status = None;
            ClusterObject::TlsRoute(o)
        }
        ClusterObject::AuthorizationPolicy(mut o) => {
            strip_meta(&mut o.metadata);
            o.other.remove("status");
            ClusterObject::AuthorizationPolicy(o)
        }
        ClusterObject::TcpRoute(mut o) => {
            strip_meta(&mut o.metadata);
            o.status = None;
            ClusterObject::TcpRoute(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    #[test]
    fn pod_keeps_only_what_translation_reads() {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.uid = Some("u".into());
        p.metadata.annotations = Some(
            [("ambit.dev/mesh".to_string(), "disabled".to_string()), ("big".to_string(), "x".repeat(1000))].into(),
        );
        p.metadata.managed_fields = Some(vec![Default::default()]);
        p.spec = Some(PodSpec {
            node_name: Some("n".into()),
            containers: vec![Container { name: "c".into(), ..Default::default() }],
            ..Default::default()
        });
        p.status = Some(PodStatus { qos_class: Some("Burstable".into()), message: Some("m".into()), ..Default::default() });
        let p = pod(p);
        assert_eq!(p.metadata.uid.as_deref(), Some("u"));
        assert!(p.metadata.managed_fields.is_none());
        assert_eq!(p.metadata.annotations.as_ref().unwrap().len(), 1);
        let spec = p.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n"));
        assert!(spec.containers.is_empty());
        let status = p.status.unwrap();
        assert_eq!(status.qos_class.as_deref(), Some("Burstable"));
        assert!(status.message.is_none());
    }
}
