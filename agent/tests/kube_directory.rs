//! The mesh directory end to end against the in-test API server (no kube-apiserver can
//! be installed here): the signer's publisher turns Pods into `MeshNode`s, and an
//! agent that watches only its own node's Pods learns every other node's pods'
//! identities and node addresses from them.

#[path = "support/kube.rs"]
mod support;

use std::net::IpAddr;
use std::time::Duration;

use ambit_agent::directory::Publisher;
use ambit_agent::kubernetes::{ClusterFeed, FeedOptions};
use ambit_agent::translate::mesh::mesh_view;
use ambit_agent::translate::NodeView;
use ambit_fake_apiserver::{FakeApiServer, Resource};
use ambit_proxy_core::identity::TrustDomain;
use serde_json::{json, Value};
use support::*;
use tokio_util::sync::CancellationToken;

fn mesh_pod(name: &str, node: &str, account: &str, ip: &str, host: &str) -> Value {
    let mut pod = pod("shop", name, &format!("uid-{name}"), node);
    pod["spec"]["serviceAccountName"] = json!(account);
    pod["status"]["podIP"] = json!(ip);
    pod["status"]["hostIP"] = json!(host);
    pod
}

/// node-a's view of `ip`: (node address, service account), if it is a mesh destination.
fn destination(state: &ambit_agent::cluster::ClusterState, ip: &str) -> Option<(Option<IpAddr>, String)> {
    let none = |_: &str, _: Option<&str>| None;
    let view = mesh_view(state, &NodeView { node_name: Some(NODE), cgroups: &none }, &TrustDomain::new("cluster.local").unwrap(), |_, pod| Some(pod));
    view.destinations.get(&ip.parse::<IpAddr>().unwrap()).map(|d| (d.node, d.identity.service_account().to_string()))
}

#[tokio::test]
async fn agents_learn_other_nodes_pods_from_the_directory() {
    let server = FakeApiServer::start().await.unwrap();
    server.apply(namespace("shop", true)).unwrap();
    server.apply(mesh_pod("web", NODE, "web", "10.244.1.2", "10.77.0.1")).unwrap();
    server.apply(mesh_pod("catalog", "node-b", "catalog", "10.244.2.2", "10.77.0.2")).unwrap();

    let shutdown = CancellationToken::new();
    let publisher = Publisher::start(client(&server).await).await.unwrap();
    tokio::spawn(publisher.run(client(&server).await, Duration::from_millis(20), shutdown.clone()));
    let mut feed = ClusterFeed::start(client(&server).await, FeedOptions { node_name: Some(NODE.into()), debounce: Duration::from_millis(20) });

    let state = wait_for(&mut feed, "node-b's MeshNode", |s| s.mesh_nodes.contains_key("node-b")).await;
    assert_eq!(state.pods.len(), 1, "the agent still watches only its own node's pods");
    assert_eq!(destination(&state, "10.244.2.2"), Some((Some("10.77.0.2".parse().unwrap()), "catalog".into())));
    assert_eq!(destination(&state, "10.244.1.2"), Some((None, "web".into())), "own pods come from the pod watch");

    // Churn on another node reaches the agent.
    server.apply(mesh_pod("cart", "node-b", "cart", "10.244.2.3", "10.77.0.2")).unwrap();
    let state = wait_for(&mut feed, "the new pod", |s| destination(s, "10.244.2.3").is_some()).await;
    assert_eq!(destination(&state, "10.244.2.3").unwrap().1, "cart");
    server.delete(Resource::Pods, "shop", "catalog").unwrap();
    wait_for(&mut feed, "the deleted pod gone", |s| destination(s, "10.244.2.2").is_none()).await;
    server.delete(Resource::Pods, "shop", "cart").unwrap();
    wait_for(&mut feed, "node-b's MeshNode deleted with its last pod", |s| !s.mesh_nodes.contains_key("node-b")).await;
    assert!(server.get(Resource::MeshNodes, "", "node-b").is_none());
    shutdown.cancel();
}

#[tokio::test]
async fn a_restarted_publisher_removes_what_its_predecessor_left() {
    let server = FakeApiServer::start().await.unwrap();
    server.apply(namespace("shop", true)).unwrap();
    server
        .apply(json!({"apiVersion": "ambit.dev/v1alpha1", "kind": "MeshNode",
                      "metadata": {"name": "gone-node", "labels": {"app.kubernetes.io/managed-by": "ambit-signer"}},
                      "spec": {"addresses": ["10.77.0.9"], "workloads": []}}))
        .unwrap();
    server.apply(mesh_pod("web", NODE, "web", "10.244.1.2", "10.77.0.1")).unwrap();
    let shutdown = CancellationToken::new();
    let publisher = Publisher::start(client(&server).await).await.unwrap();
    tokio::spawn(publisher.run(client(&server).await, Duration::from_millis(20), shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.get(Resource::MeshNodes, "", "gone-node").is_some() || server.get(Resource::MeshNodes, "", NODE).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "stale MeshNode not replaced in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
}
