//! A simulated large cluster for the control-plane scale scenario: namespaces,
//! Services with one EndpointSlice each, and one `MeshNode` per node listing its pods
//! (the mesh directory agents watch instead of Pods). Only objects are made: the
//! addresses are never dialled.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

/// The simulated cluster's size.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub nodes: usize,
    pub pods_per_node: usize,
    pub services: usize,
    pub namespaces: usize,
}

/// Endpoints per EndpointSlice.
const ENDPOINTS_PER_SLICE: usize = 5;

impl Size {
    pub fn pods(&self) -> usize {
        self.nodes * self.pods_per_node
    }
}

fn namespace_name(i: usize) -> String {
    format!("scale-{i}")
}

/// Pod `j`'s IP: 10.128.0.0/9 counted upwards.
fn pod_ip(j: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + j as u32)
}

/// Node `k`'s address: 172.30.0.0/16 counted upwards (from 172.30.1.0).
fn node_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 30, 1, 0)) + k as u32)
}

/// Service `i`'s cluster IP: 10.100.0.0/14 counted upwards.
fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + i as u32 + 1)
}

pub fn namespaces(size: &Size) -> Vec<Value> {
    (0..size.namespaces)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": namespace_name(i), "labels": {"ambit.dev/mesh": "enabled"}}})
        })
        .collect()
}

/// The `MeshNode` of node `k` with its pods.
pub fn mesh_node(size: &Size, k: usize) -> Value {
    let workloads: Vec<Value> = (0..size.pods_per_node)
        .map(|p| {
            let j = k * size.pods_per_node + p;
            workload(size, j, pod_ip(j))
        })
        .collect();
    mesh_node_object(&format!("scale-node-{k}"), node_ip(k), workloads)
}

/// A node beyond the cluster's whose first pod appears (churn `c`): one pod.
pub fn churn_node(size: &Size, c: usize) -> (String, Value) {
    let name = format!("scale-churn-{c}");
    let j = size.pods() + c;
    (name.clone(), mesh_node_object(&name, node_ip(size.nodes + c), vec![workload(size, j, pod_ip(j))]))
}

fn workload(size: &Size, j: usize, ip: Ipv4Addr) -> Value {
    json!({"namespace": namespace_name(j % size.namespaces), "serviceAccount": format!("sa-{}", j % 50), "ips": [ip.to_string()]})
}

fn mesh_node_object(name: &str, address: Ipv4Addr, workloads: Vec<Value>) -> Value {
    json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "MeshNode",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "ambit-signer"}},
        "spec": {"addresses": [address.to_string()], "workloads": workloads},
    })
}

/// Service `i` and its EndpointSlice (endpoints spread over the simulated pods).
pub fn service(size: &Size, i: usize) -> [Value; 2] {
    let ns = namespace_name(i % size.namespaces);
    let name = format!("svc-{i}");
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": cluster_ip(i).to_string(), "clusterIPs": [cluster_ip(i).to_string()], "selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "appProtocol": "http"}]},
    });
    let endpoints: Vec<Value> = (0..ENDPOINTS_PER_SLICE)
        .map(|e| {
            let j = (i * ENDPOINTS_PER_SLICE + e) % size.pods();
            json!({"addresses": [pod_ip(j).to_string()], "conditions": {"ready": true},
                   "nodeName": format!("scale-node-{}", j / size.pods_per_node)})
        })
        .collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-1"), "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    });
    [svc, slice]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_do_not_collide() {
        let size = Size { nodes: 5000, pods_per_node: 20, services: 20_000, namespaces: 100 };
        assert_eq!(pod_ip(size.pods() + 10_000).octets()[0], 10);
        assert!(u32::from(cluster_ip(size.services)) < u32::from(pod_ip(0)));
        assert_eq!(node_ip(4999).octets()[..2], [172, 30]);
        let node = mesh_node(&size, 3);
        assert_eq!(node["spec"]["workloads"].as_array().unwrap().len(), 20);
        let (name, churn) = churn_node(&size, 9);
        assert_eq!(churn["metadata"]["name"], name.as_str());
        let [svc, slice] = service(&size, 7);
        assert_eq!(svc["metadata"]["name"], slice["metadata"]["labels"]["kubernetes.io/service-name"]);
    }
}
