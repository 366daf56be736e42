//! Kubernetes YAML the bed writes for the agent, and the directory writer
//! (one object per file, atomic replace, stale files removed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// Writes a set of files into a directory, touching only what changed.
#[derive(Debug)]
pub struct ManifestWriter {
    dir: PathBuf,
    written: BTreeMap<String, String>,
}

impl ManifestWriter {
    /// A writer for `dir` (which must exist).
    pub fn new(dir: &Path) -> Self {
        ManifestWriter { dir: dir.to_path_buf(), written: BTreeMap::new() }
    }

    /// Makes the directory hold exactly `files` (file name → content): new and
    /// changed files are written to a temporary name and renamed into place,
    /// files no longer wanted are removed.
    pub fn sync(&mut self, files: BTreeMap<String, String>) -> Result<()> {
        for (name, content) in &files {
            if self.written.get(name) != Some(content) {
                write_atomic(&self.dir.join(name), content)?;
            }
        }
        for name in self.written.keys() {
            if !files.contains_key(name) {
                let _ = std::fs::remove_file(self.dir.join(name));
            }
        }
        self.written = files;
        Ok(())
    }
}

/// Writes `content` to `path` via a temporary file (dot-prefixed, `.tmp`
/// suffix) in the same directory and a rename.
pub fn write_atomic(path: &Path, content: &str) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let name = path.file_name().context("path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// File name for an object: `<kind>-<namespace>-<name>.yaml` (lower case).
pub fn file_name(kind: &str, namespace: Option<&str>, name: &str) -> String {
    let ns = namespace.map(|n| format!("{n}-")).unwrap_or_default();
    format!("{}-{ns}{name}.yaml", kind.to_ascii_lowercase())
}

/// Renders a JSON value as a YAML document.
pub fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(v).expect("JSON values always serialize to YAML")
}

/// A Namespace object.
pub fn namespace(name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut labels = labels.clone();
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name, "labels": labels },
        "status": { "phase": "Active" },
    })
}

/// Everything needed to render a Pod object.
#[derive(Debug, Clone)]
pub struct PodObject<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// metadata.uid.
    pub uid: &'a str,
    /// Labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Pod IPs (first is status.podIP).
    pub ips: Vec<String>,
    /// spec.nodeName.
    pub node_name: &'a str,
    /// The node's addresses: status.hostIP (the first) and status.hostIPs.
    pub host_ips: Vec<String>,
    /// spec.serviceAccountName.
    pub service_account: &'a str,
    /// spec.hostNetwork.
    pub host_network: bool,
    /// Container id (64 hex) of the single container.
    pub container_id: &'a str,
    /// Container ports (name, port).
    pub ports: &'a [(Option<String>, u16)],
    /// Owning Deployment, if any (rendered as a ReplicaSet owner like real pods).
    pub owner: Option<&'a str>,
}

/// A Pod object, Running and Ready.
pub fn pod(p: &PodObject<'_>) -> Value {
    let ports: Vec<Value> = p
        .ports
        .iter()
        .map(|(name, port)| {
            let mut v = json!({ "containerPort": port, "protocol": "TCP" });
            if let Some(n) = name {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    let ready = json!([
        { "type": "Initialized", "status": "True" },
        { "type": "Ready", "status": "True" },
        { "type": "ContainersReady", "status": "True" },
        { "type": "PodScheduled", "status": "True" },
    ]);
    let mut metadata = json!({
        "name": p.name,
        "namespace": p.namespace,
        "uid": p.uid,
        "labels": p.labels,
    });
    if let Some(owner) = p.owner {
        let rs = p.name.rsplit_once('-').map(|(a, _)| a).unwrap_or(owner);
        metadata["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
            "uid": format!("rs-{rs}"), "controller": true,
        }]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": p.node_name,
            "serviceAccountName": p.service_account,
            "hostNetwork": p.host_network,
            "containers": [{ "name": "echo", "image": "ambit-pod", "ports": ports }],
        },
        "status": {
            "phase": "Running",
            "hostIP": p.host_ips.first(),
            "hostIPs": p.host_ips.iter().map(|ip| json!({ "ip": ip })).collect::<Vec<_>>(),
            "podIP": p.ips.first(),
            "podIPs": p.ips.iter().map(|ip| json!({ "ip": ip })).collect::<Vec<_>>(),
            "conditions": ready,
            "containerStatuses": [{
                "name": "echo", "ready": true, "started": true, "restartCount": 0,
                "image": "ambit-pod", "imageID": "ambit-pod",
                "containerID": format!("containerd://{}", p.container_id),
                "state": { "running": {} },
            }],
        },
    })
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone)]
pub struct SliceEndpoint {
    /// Address (of the slice's family).
    pub address: String,
    /// Pod name.
    pub pod: String,
    /// Pod uid.
    pub uid: String,
    /// Node name.
    pub node_name: String,
}

/// One port of an EndpointSlice.
#[derive(Debug, Clone)]
pub struct SlicePort {
    /// Service port name.
    pub name: Option<String>,
    /// Resolved target port.
    pub port: u16,
    /// appProtocol of the Service port.
    pub app_protocol: Option<String>,
}

/// An EndpointSlice of `service` for one address family (`IPv4`/`IPv6`).
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    address_type: &str,
    ports: &[SlicePort],
    endpoints: &[SliceEndpoint],
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut v = json!({ "port": p.port, "protocol": "TCP", "name": p.name.clone().unwrap_or_default() });
            if let Some(a) = &p.app_protocol {
                v["appProtocol"] = json!(a);
            }
            v
        })
        .collect();
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            json!({
                "addresses": [e.address],
                "conditions": { "ready": true, "serving": true, "terminating": false },
                "nodeName": e.node_name,
                "targetRef": { "kind": "Pod", "namespace": namespace, "name": e.pod, "uid": e.uid },
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Service", "name": service, "controller": true }],
        },
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    })
}
