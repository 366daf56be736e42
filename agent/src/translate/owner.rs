//! The owning workload of a pod: a bounded name for metrics labels (a Deployment has
//! many pods over time, but one name).

use k8s_openapi::api::core::v1::Pod;

/// The pod's owning workload name:
/// - owned by a ReplicaSet whose name is `<deployment>-<pod-template-hash>`: the Deployment;
/// - owned by a Job named `<cronjob>-<digits>`: the CronJob;
/// - owned by anything else (StatefulSet, DaemonSet, Job, ReplicaSet, ...): the owner's name;
/// - no owner: `metadata.generateName` without its trailing `-`, else the pod's name.
pub fn workload_name(pod: &Pod) -> String {
    let meta = &pod.metadata;
    let owner = meta.owner_references.as_ref().and_then(|owners| {
        owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())
    });
    if let Some(owner) = owner {
        return match owner.kind.as_str() {
            "ReplicaSet" => {
                let hash = meta.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
                match hash.and_then(|h| owner.name.strip_suffix(h.as_str())).and_then(|n| n.strip_suffix('-')) {
                    Some(deployment) if !deployment.is_empty() => deployment.to_owned(),
                    _ => owner.name.clone(),
                }
            }
            "Job" => match owner.name.rsplit_once('-') {
                Some((cronjob, suffix))
                    if !cronjob.is_empty() && suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    cronjob.to_owned()
                }
                _ => owner.name.clone(),
            },
            _ => owner.name.clone(),
        };
    }
    match meta.generate_name.as_deref().map(|g| g.trim_end_matches('-')) {
        Some(base) if !base.is_empty() => base.to_owned(),
        _ => meta.name.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(name: &str, owner: Option<(&str, &str)>, hash: Option<&str>, generate: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                generate_name: generate.map(Into::into),
                labels: hash.map(|h| [("pod-template-hash".to_string(), h.to_string())].into()),
                owner_references: owner.map(|(kind, name)| {
                    vec![OwnerReference {
                        kind: kind.into(),
                        name: name.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn owners() {
        let deployment = pod("web-7d9f8-abcde", Some(("ReplicaSet", "web-7d9f8")), Some("7d9f8"), Some("web-7d9f8-"));
        assert_eq!(workload_name(&deployment), "web");
        let bare_rs = pod("rs-x1", Some(("ReplicaSet", "rs")), None, None);
        assert_eq!(workload_name(&bare_rs), "rs");
        assert_eq!(workload_name(&pod("db-0", Some(("StatefulSet", "db")), None, None)), "db");
        assert_eq!(workload_name(&pod("agent-x2", Some(("DaemonSet", "agent")), None, None)), "agent");
        assert_eq!(workload_name(&pod("nightly-28999999-q", Some(("Job", "nightly-28999999")), None, None)), "nightly");
        assert_eq!(workload_name(&pod("migrate-q", Some(("Job", "migrate")), None, None)), "migrate");
        assert_eq!(workload_name(&pod("worker-abcde", None, None, Some("worker-"))), "worker");
        assert_eq!(workload_name(&pod("client", None, None, None)), "client");
    }
}
