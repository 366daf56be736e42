//! The committed CRDs are exactly what the agent's types generate
//! (`AMBIT_BLESS=1 cargo test -p ambit-agent --test crd_manifests` rewrites them).

use std::path::Path;

use ambit_agent::authz::AuthorizationPolicy;
use ambit_agent::directory::MeshNode;
use kube::CustomResourceExt;

fn check(file: &str, crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemonset/crds").join(file);
    let generated = format!(
        "# Generated from the agent's types: AMBIT_BLESS=1 cargo test -p ambit-agent --test crd_manifests\n{}",
        serde_yaml::to_string(&crd).unwrap()
    );
    if std::env::var_os("AMBIT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(committed, generated, "{file} is stale: regenerate it with AMBIT_BLESS=1");
}

#[test]
fn the_mesh_node_crd_matches_its_type() {
    let crd = MeshNode::crd();
    assert_eq!(crd.spec.scope, "Cluster");
    check("meshnodes.yaml", crd);
}

#[test]
fn the_authorization_policy_crd_matches_its_type() {
    let crd = AuthorizationPolicy::crd();
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "no status subresource");
    check("authorizationpolicies.yaml", crd);
}
