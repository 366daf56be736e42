//! The compact stored forms stay compact: the live heap each stored Service,
//! EndpointSlice and `MeshNode` takes, counted with a counting allocator, on objects
//! shaped like bench scenario 9's (issue 9's scale target). Whole k8s-openapi objects
//! took 1.6 KiB (Service), 3.1 KiB (slice of 5 endpoints) and 3.3 KiB (MeshNode of 20
//! pods); the limits below are about 1.5× what the compact forms take.

use std::net::Ipv4Addr;

use ambit_agent::cluster::{ClusterObject, ClusterState};
use ambit_agent::translate::{translate, NodeView};
use serde_json::{json, Value};

#[global_allocator]
static GLOBAL: ambit_alloc_count::Counting = ambit_alloc_count::Counting;

const SERVICES: usize = 2_000;
const NODES: usize = 500;
const PODS_PER_NODE: usize = 20;
const NAMESPACES: usize = 100;

fn ip(base: Ipv4Addr, i: usize) -> String {
    Ipv4Addr::from(u32::from(base) + i as u32).to_string()
}

fn namespace(i: usize) -> String {
    format!("scale-{}", i % NAMESPACES)
}

fn service(i: usize) -> Value {
    let cluster_ip = ip(Ipv4Addr::new(10, 100, 0, 1), i);
    json!({"metadata": {"name": format!("svc-{i}"), "namespace": namespace(i), "resourceVersion": "1234567"},
           "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "selector": {"app": format!("svc-{i}")},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "appProtocol": "http"}]}})
}

fn slice(i: usize) -> Value {
    let endpoints: Vec<Value> = (0..5)
        .map(|e| {
            let j = i * 5 + e;
            json!({"addresses": [ip(Ipv4Addr::new(10, 128, 0, 0), j)], "conditions": {"ready": true},
                   "nodeName": format!("scale-node-{}", j / PODS_PER_NODE)})
        })
        .collect();
    json!({"metadata": {"name": format!("svc-{i}-1"), "namespace": namespace(i), "resourceVersion": "1234568",
                        "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints})
}

fn mesh_node(k: usize) -> Value {
    let workloads: Vec<Value> = (0..PODS_PER_NODE)
        .map(|p| {
            let j = k * PODS_PER_NODE + p;
            json!({"namespace": namespace(j), "serviceAccount": format!("sa-{}", j % 50), "ips": [ip(Ipv4Addr::new(10, 128, 0, 0), j)]})
        })
        .collect();
    json!({"apiVersion": "ambit.dev/v1alpha1", "kind": "MeshNode",
           "metadata": {"name": format!("scale-node-{k}"), "resourceVersion": "1234569", "labels": {"app.kubernetes.io/managed-by": "ambit-signer"}},
           "spec": {"addresses": [ip(Ipv4Addr::new(172, 30, 1, 0), k)], "workloads": workloads}})
}

/// Live bytes per object after inserting `count` objects made by `make`.
fn bytes_each(state: &mut ClusterState, count: usize, make: impl Fn(usize) -> ClusterObject) -> usize {
    let before = ambit_alloc_count::live_bytes();
    for i in 0..count {
        state.insert(make(i)).unwrap();
    }
    ambit_alloc_count::live_bytes().saturating_sub(before) / count
}

#[test]
fn stored_objects_take_a_few_hundred_bytes() {
    let mut state = ClusterState::new();
    for i in 0..NAMESPACES {
        let ns = serde_json::from_value(json!({"metadata": {"name": namespace(i), "labels": {"ambit.dev/mesh": "enabled"}}})).unwrap();
        state.insert(ClusterObject::Namespace(ns)).unwrap();
    }
    let service = bytes_each(&mut state, SERVICES, |i| ClusterObject::service(serde_json::from_value(service(i)).unwrap()));
    let slice = bytes_each(&mut state, SERVICES, |i| ClusterObject::endpoint_slice(serde_json::from_value(slice(i)).unwrap()));
    let node = bytes_each(&mut state, NODES, |k| ClusterObject::mesh_node(serde_json::from_value(mesh_node(k)).unwrap()));
    eprintln!("bytes each: Service {service}, EndpointSlice {slice}, MeshNode {node}");
    assert!(service <= 400, "a stored Service takes {service} B");
    assert!(slice <= 480, "a stored EndpointSlice of 5 endpoints takes {slice} B");
    assert!(node <= 2_200, "a stored MeshNode of {PODS_PER_NODE} pods takes {node} B");

    // What is stored still translates: every Service with its 5 endpoints.
    let none = |_: &str, _: Option<&str>| None;
    let translation = translate(&state, &NodeView { node_name: Some("elsewhere"), cgroups: &none });
    assert_eq!(translation.config.services.len(), SERVICES);
    assert!(translation.config.services.values().all(|sp| sp.endpoints.addrs().len() == 5));
    assert!(translation.problems.is_empty(), "{:?}", translation.problems);
}
