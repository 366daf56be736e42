//! The little OpenAPI v3 that `kubectl apply` reads before it writes: the index
//! (`/openapi/v3`) and, per group version, a document whose PATCH operations carry the
//! `x-kubernetes-group-version-kind` of each served kind and a `fieldValidation` query
//! parameter. From that kubectl concludes that the server validates fields itself
//! (`?fieldValidation=Strict`) and validates nothing on the client side, as against a
//! real API server. No schemas are served: kubectl then computes strategic merge patches
//! for built-in kinds from its compiled-in types, and JSON merge patches for the
//! Gateway API kinds (custom resources), as it does for CRDs.
//!
//! What this server checks under `fieldValidation=Strict` is in [`unknown_fields`].

use serde_json::{json, Map, Value};

use crate::resource::Resource;

/// The document for `path` (`/openapi/v3` or `/openapi/v3/<api|apis/group>/v1`), if any.
pub fn document(path: &str) -> Option<Value> {
    let rest = path.strip_prefix("/openapi/v3")?;
    if rest.is_empty() || rest == "/" {
        return Some(index());
    }
    let group_version = rest.trim_start_matches('/');
    let resources: Vec<Resource> = Resource::ALL.into_iter().filter(|r| gv_path(*r) == group_version).collect();
    (!resources.is_empty()).then(|| group_version_document(&resources))
}

/// `api/v1` or `apis/<group>/v1`.
fn gv_path(resource: Resource) -> String {
    resource.prefix().trim_start_matches('/').to_string()
}

fn index() -> Value {
    let mut paths = Map::new();
    for resource in Resource::ALL {
        let gv = gv_path(resource);
        paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}")}));
    }
    json!({"paths": paths})
}

fn group_version_document(resources: &[Resource]) -> Value {
    let mut paths = Map::new();
    for resource in resources {
        let (group, version) = match resource.api_version().split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", resource.api_version()),
        };
        let gvk = json!({"group": group, "version": version, "kind": resource.kind()});
        let patch = json!({
            "operationId": format!("patch{}", resource.kind()),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(object_path(*resource), json!({"patch": patch}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "ambit in-test API server", "version": "v1"}, "paths": paths})
}

fn object_path(resource: Resource) -> String {
    if resource.namespaced() {
        format!("{}/namespaces/{{namespace}}/{}/{{name}}", resource.prefix(), resource.plural())
    } else {
        format!("{}/{}/{{name}}", resource.prefix(), resource.plural())
    }
}

/// The top-level fields of `object` that its kind does not have: what this server
/// rejects under `fieldValidation=Strict` (nested fields are not checked).
pub fn unknown_fields(resource: Resource, object: &Value) -> Vec<String> {
    let known: &[&str] = match resource {
        Resource::EndpointSlices => &["apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"],
        Resource::ConfigMaps => &["apiVersion", "kind", "metadata", "data", "binaryData", "immutable"],
        _ => &["apiVersion", "kind", "metadata", "spec", "status"],
    };
    object.as_object().map(|map| map.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_names_each_group_version_once() {
        let index = document("/openapi/v3").unwrap();
        let paths = index["paths"].as_object().unwrap();
        assert!(paths.contains_key("api/v1"));
        assert_eq!(paths["apis/gateway.networking.k8s.io/v1"]["serverRelativeURL"], "/openapi/v3/apis/gateway.networking.k8s.io/v1");
    }

    #[test]
    fn patch_operations_declare_field_validation() {
        let doc = document("/openapi/v3/apis/gateway.networking.k8s.io/v1").unwrap();
        let op = &doc["paths"]["/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "HTTPRoute");
        assert!(op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        let core = document("/openapi/v3/api/v1").unwrap();
        assert_eq!(core["paths"]["/api/v1/namespaces/{name}"]["patch"]["x-kubernetes-group-version-kind"]["group"], "");
        assert!(document("/openapi/v3/apis/apps/v1").is_none());
        assert!(document("/openapi/v2").is_none());
    }

    #[test]
    fn strict_rejects_unknown_top_level_fields() {
        let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {}, "spce": {}});
        assert_eq!(unknown_fields(Resource::HttpRoutes, &route), vec!["spce".to_string()]);
        let slice = json!({"kind": "EndpointSlice", "addressType": "IPv4", "endpoints": []});
        assert!(unknown_fields(Resource::EndpointSlices, &slice).is_empty());
    }
}
