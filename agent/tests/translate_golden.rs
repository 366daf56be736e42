//! Translation of Services, EndpointSlices and the mesh directory against a golden file:
//! `golden/services.yaml` holds the edge cases (invalid ports and addresses, headless
//! Services, unready endpoints, slices of no Service, dual stack, directory entries of
//! other nodes); `golden/services.json` what translation made of them when the store
//! still held whole Kubernetes objects. The compact stored forms must translate the
//! same. Rewrite the golden file (after checking the difference) with
//! `AMBIT_UPDATE_GOLDEN=1 cargo test -p ambit-agent --test translate_golden`.

use std::path::{Path, PathBuf};

use ambit_agent::cluster::ClusterState;
use ambit_agent::manifests::{allocate_missing_cluster_ips, load_dir};
use ambit_agent::translate::mesh::mesh_view;
use ambit_agent::translate::{translate, NodeView, Translation};
use ambit_proxy_core::identity::TrustDomain;
use serde_json::{json, Value};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load() -> ClusterState {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(golden_dir().join("services.yaml"), dir.path().join("services.yaml")).unwrap();
    let (state, errors) = load_dir(dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    state
}

fn rendered(t: &Translation) -> Value {
    json!({
        "config": t.config.dump(),
        "serviceAddrs": t.service_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "routeStatus": t.route_status,
        "problems": t.problems,
    })
}

/// The mesh destinations as node n1 sees them: `ip → node (or "this node"), identity`.
fn mesh(state: &ClusterState) -> Value {
    let none = |_: &str, _: Option<&str>| None;
    let view = mesh_view(state, &NodeView { node_name: Some("n1"), cgroups: &none }, &TrustDomain::new("td").unwrap(), |_, pod| Some(pod));
    let mut destinations: Vec<String> = view
        .destinations
        .iter()
        .map(|(ip, pod)| format!("{ip} → {} {}", pod.node.map_or("this node".to_string(), |n| n.to_string()), pod.identity))
        .collect();
    destinations.sort();
    json!({
        "destinations": destinations,
        "localIdentities": view.local_identities.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "problems": view.problems,
    })
}

fn actual() -> Value {
    let mut state = load();
    let none = |_: &str, _: Option<&str>| None;
    let on_n1 = translate(&state, &NodeView { node_name: Some("n1"), cgroups: &none });
    let mesh = mesh(&state);
    let assigned = allocate_missing_cluster_ips(&mut state);
    let checked = translate(&state, &NodeView { node_name: None, cgroups: &none });
    json!({
        "onNode": rendered(&on_n1),
        "mesh": mesh,
        "check": {"assigned": assigned, "translation": rendered(&checked)},
    })
}

#[test]
fn translation_matches_the_golden_file() {
    let actual = serde_json::to_string_pretty(&actual()).unwrap() + "\n";
    let path = golden_dir().join("services.json");
    if std::env::var_os("AMBIT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if expected != actual {
        let wrong = golden_dir().join("services.actual.json");
        std::fs::write(&wrong, &actual).unwrap();
        panic!("translation differs from {}: see {} (diff them)", path.display(), wrong.display());
    }
}
