//! Helpers shared by the `kube_*` tests: objects for the fake API server, waiting on
//! the feed, translating without eBPF.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use ambit_agent::cgroups::PodCgroup;
use ambit_agent::cluster::ClusterState;
use ambit_agent::kubernetes::{ClusterFeed, Snapshot};
use ambit_agent::translate::{self, NodeView, Translation};
use ambit_proxy_core::identity::CgroupId;
use serde_json::{json, Value};

pub const NODE: &str = "node-a";

pub fn namespace(name: &str, enrolled: bool) -> Value {
    let labels = if enrolled { json!({"ambit.dev/mesh": "enabled"}) } else { json!({}) };
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

pub fn pod(ns: &str, name: &str, uid: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"namespace": ns, "name": name, "uid": uid,
                        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                        "managedFields": [{"manager": "kubectl"}]},
           "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
           "status": {"phase": "Running", "qosClass": "BestEffort", "podIP": "10.0.0.5"}})
}

pub fn service(ns: &str, name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
           "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}})
}

pub fn endpoint_slice(ns: &str, service: &str, ip: &str) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"namespace": ns, "name": format!("{service}-abc"), "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

pub fn http_route(ns: &str, name: &str, service: &str, path: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": service, "port": 80}],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                               "backendRefs": [{"name": service, "port": 80}]}]}})
}

/// Waits (at most 10 s) for a published snapshot satisfying `check`.
pub async fn wait_for(feed: &mut ClusterFeed, what: &str, check: impl Fn(&ClusterState) -> bool) -> Snapshot {
    let mut rx = feed.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = rx.borrow_and_update().clone() {
            if check(&s) {
                return s;
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("feed stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; last state: {:#?}", rx.borrow().as_ref().map(|s| s.len())),
        }
    }
}

/// Translation for node-a where every pod's cgroup "exists" (id derived from its uid).
pub fn translate(state: &ClusterState) -> Translation {
    let lookup = |uid: &str, _qos: Option<&str>| {
        Some(PodCgroup { path: PathBuf::from(format!("/fake/{uid}")), id: CgroupId(uid.bytes().map(u64::from).sum()) })
    };
    translate::translate(state, &NodeView { node_name: Some(NODE), cgroups: &lookup })
}

pub async fn client(server: &ambit_fake_apiserver::FakeApiServer) -> kube::Client {
    ambit_agent::kubernetes::client(&ambit_agent::kubernetes::ApiServer::Url(server.url())).await.expect("client")
}
