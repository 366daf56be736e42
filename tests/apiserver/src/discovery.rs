//! API discovery in the legacy (unaggregated) format, what `kubectl` reads to map a
//! kind to its resource: `/api`, `/apis`, `/api/v1` and `/apis/<group>/<version>`.
//!
//! Every served group has one version (`v1`, or `v1alpha1` for `ambit.dev`). A client that asks for aggregated
//! discovery (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`)
//! gets this legacy format with `Content-Type: application/json` and falls back to it,
//! as it does against any server without aggregated discovery.

use serde_json::{json, Value};

use crate::resource::Resource;

/// The discovery document for `path`, if it is a discovery path of a served group.
pub fn document(path: &str) -> Option<Value> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api"] => Some(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})),
        ["apis"] => Some(group_list()),
        ["api", "v1"] => Some(resource_list("v1", "")),
        ["apis", group, version] if groups().contains(group) && group_version(group) == format!("{group}/{version}") => {
            Some(resource_list(&group_version(group), group))
        }
        ["apis", group] if groups().contains(group) => Some(group_document(group)),
        _ => None,
    }
}

/// The named groups served, in a stable order.
fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Resource::ALL.iter().map(|r| r.group()).filter(|g| !g.is_empty()).collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// `<group>/<version>` of a served group (its resources' apiVersion).
fn group_version(group: &str) -> String {
    Resource::ALL.iter().find(|r| r.group() == group).map_or_else(|| format!("{group}/v1"), |r| r.api_version().to_string())
}

fn group_document(group: &str) -> Value {
    let group_version = group_version(group);
    let plain = group_version.rsplit('/').next().unwrap_or("v1").to_string();
    let version = json!({"groupVersion": group_version, "version": plain});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [version.clone()], "preferredVersion": version})
}

fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|g| {
            let mut doc = group_document(g);
            if let Some(map) = doc.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            doc
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group_version: &str, group: &str) -> Value {
    let mut resources = Vec::new();
    for resource in Resource::ALL.into_iter().filter(|r| r.group() == group) {
        resources.push(json!({
            "name": resource.plural(),
            "singularName": resource.kind().to_ascii_lowercase(),
            "namespaced": resource.namespaced(),
            "kind": resource.kind(),
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": resource.short_names(),
        }));
        let status = resource.has_status_subresource().then_some("status");
        for sub in status.into_iter().chain(resource.other_subresources().iter().copied()) {
            resources.push(json!({
                "name": format!("{}/{sub}", resource.plural()),
                "singularName": "",
                "namespaced": resource.namespaced(),
                "kind": resource.kind(),
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &Value) -> Vec<String> {
        list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn core_and_group_versions() {
        assert_eq!(document("/api").unwrap()["versions"], json!(["v1"]));
        let core = document("/api/v1").unwrap();
        assert!(names(&core).contains(&"namespaces".to_string()));
        assert_eq!(core["resources"][0]["namespaced"], json!(false));
        let gateway = document("/apis/gateway.networking.k8s.io/v1").unwrap();
        assert_eq!(gateway["groupVersion"], "gateway.networking.k8s.io/v1");
        assert!(names(&gateway).contains(&"httproutes".to_string()));
        assert!(names(&gateway).contains(&"httproutes/status".to_string()));
        let certificates = document("/apis/certificates.k8s.io/v1").unwrap();
        for name in ["certificatesigningrequests", "certificatesigningrequests/approval", "certificatesigningrequests/status"] {
            assert!(names(&certificates).contains(&name.to_string()), "{name}");
        }
        assert_eq!(certificates["resources"][0]["namespaced"], json!(false));
    }

    #[test]
    fn group_list_names_every_group_with_its_preferred_version() {
        let list = document("/apis").unwrap();
        let groups: Vec<&str> = list["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(groups, vec!["ambit.dev", "certificates.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "gateway.networking.k8s.io"]);
        assert_eq!(list["groups"][0]["preferredVersion"]["version"], "v1alpha1");
        assert_eq!(list["groups"][1]["preferredVersion"]["version"], "v1");
    }

    #[test]
    fn unknown_paths_are_not_discovery() {
        assert!(document("/apis/apps/v1").is_none());
        assert!(document("/api/v2").is_none());
        assert!(document("/api/v1/pods").is_none());
    }
}
