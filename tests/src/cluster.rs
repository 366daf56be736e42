//! The bed's view of the cluster objects it was given: parsing of
//! Kubernetes documents into the few facts the bed acts on (Deployments,
//! Services), cluster-IP allocation and EndpointSlice computation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::manifests::{SliceEndpoint, SlicePort};

/// Labels / selectors.
pub type Labels = BTreeMap<String, String>;

/// One Kubernetes document.
#[derive(Debug, Clone)]
pub struct Doc {
    /// `kind`.
    pub kind: String,
    /// metadata.namespace (None for cluster-scoped objects or when unset).
    pub namespace: Option<String>,
    /// metadata.name.
    pub name: String,
    /// The whole object.
    pub value: Value,
}

impl Doc {
    /// Namespace, defaulting to `default`.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// Splits multi-document YAML into objects (empty documents are skipped;
/// `List` objects are flattened).
pub fn parse_documents(yaml: &str) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(de).with_context(|| format!("YAML document {i}"))?;
        if value.is_null() {
            continue;
        }
        push_doc(value, i, &mut docs)?;
    }
    Ok(docs)
}

fn push_doc(value: Value, i: usize, docs: &mut Vec<Doc>) -> Result<()> {
    let kind = value["kind"].as_str().ok_or_else(|| anyhow!("document {i} has no kind"))?.to_string();
    if kind == "List" {
        for item in value["items"].as_array().cloned().unwrap_or_default() {
            push_doc(item, i, docs)?;
        }
        return Ok(());
    }
    let name = value["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("document {i} ({kind}) has no metadata.name"))?
        .to_string();
    let namespace = value["metadata"]["namespace"].as_str().map(str::to_string);
    docs.push(Doc { kind, namespace, name, value });
    Ok(())
}

/// A string map field (labels, selector), empty when absent.
pub fn string_map(v: &Value) -> Labels {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `labels` match every pair of `selector`.
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A container port: (name, number).
pub type ContainerPort = (Option<String>, u16);

/// What the bed needs from a Deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    /// spec.replicas (default 1).
    pub replicas: usize,
    /// Pod template labels.
    pub labels: Labels,
    /// Container ports of all containers.
    pub ports: Vec<ContainerPort>,
    /// Pod template spec.serviceAccountName.
    pub service_account: Option<String>,
    /// Pod template spec.nodeName (a bed node's name pins every replica there).
    pub node_name: Option<String>,
}

/// Reads a Deployment document.
pub fn deployment_spec(doc: &Doc) -> Result<DeploymentSpec> {
    let spec = &doc.value["spec"];
    let replicas = match &spec["replicas"] {
        Value::Null => 1,
        v => v.as_u64().ok_or_else(|| anyhow!("Deployment {}: bad replicas {v}", doc.name))? as usize,
    };
    if replicas > 50 {
        bail!("Deployment {}: {replicas} replicas is more than the bed allows (50)", doc.name);
    }
    let template = &spec["template"];
    let mut ports = Vec::new();
    for c in template["spec"]["containers"].as_array().cloned().unwrap_or_default() {
        for p in c["ports"].as_array().cloned().unwrap_or_default() {
            let n = p["containerPort"].as_u64().and_then(|n| u16::try_from(n).ok());
            let Some(n) = n else { bail!("Deployment {}: bad containerPort {p}", doc.name) };
            ports.push((p["name"].as_str().map(str::to_string), n));
        }
    }
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    Ok(DeploymentSpec {
        replicas,
        labels: string_map(&template["metadata"]["labels"]),
        ports,
        service_account: text(&template["spec"]["serviceAccountName"]),
        node_name: text(&template["spec"]["nodeName"]),
    })
}

/// A Service port's targetPort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port.
    Named(String),
}

/// A Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// name.
    pub name: Option<String>,
    /// port.
    pub port: u16,
    /// targetPort (defaults to port).
    pub target: TargetPort,
    /// appProtocol.
    pub app_protocol: Option<String>,
}

/// A Service the bed manages.
#[derive(Debug, Clone)]
pub struct ServiceRecord {
    /// The document as given (rendered back with IPs filled in).
    pub doc: Doc,
    /// metadata.uid (generated).
    pub uid: String,
    /// spec.selector (None: no selector, no EndpointSlices are built).
    pub selector: Option<Labels>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// IPv4 cluster IP.
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 cluster IP.
    pub ipv6: Option<Ipv6Addr>,
    /// Random suffix of the EndpointSlice names.
    pub slice_suffix: String,
}

/// Reads the ports of a Service document.
pub fn service_ports(doc: &Doc) -> Result<Vec<ServicePort>> {
    let mut out = Vec::new();
    for p in doc.value["spec"]["ports"].as_array().cloned().unwrap_or_default() {
        let port = p["port"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| anyhow!("Service {}: bad port {p}", doc.name))?;
        let target = match &p["targetPort"] {
            Value::Null => TargetPort::Number(port),
            Value::Number(n) => TargetPort::Number(
                n.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| anyhow!("Service {}: bad targetPort {n}", doc.name))?,
            ),
            Value::String(s) => match s.parse() {
                Ok(n) => TargetPort::Number(n),
                Err(_) => TargetPort::Named(s.clone()),
            },
            v => bail!("Service {}: bad targetPort {v}", doc.name),
        };
        out.push(ServicePort {
            name: p["name"].as_str().map(str::to_string),
            port,
            target,
            app_protocol: p["appProtocol"].as_str().map(str::to_string),
        });
    }
    Ok(out)
}

/// Which families a Service wants: (ipv4, ipv6).
pub fn service_families(doc: &Doc, dual_stack_default: bool) -> (bool, bool) {
    let spec = &doc.value["spec"];
    let families: Vec<&str> =
        spec["ipFamilies"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    let dual = matches!(spec["ipFamilyPolicy"].as_str(), Some("PreferDualStack" | "RequireDualStack"))
        || (spec["ipFamilyPolicy"].is_null() && dual_stack_default);
    if dual {
        return (true, true);
    }
    match families.first() {
        Some(&"IPv6") => (false, true),
        _ => (true, false),
    }
}

/// Hands out cluster IPs from 10.96.0.0/16 and fd96::/64.
#[derive(Debug, Default)]
pub struct ClusterIpAllocator {
    next: u32,
    used: BTreeSet<std::net::IpAddr>,
}

impl ClusterIpAllocator {
    /// Marks an address as used (explicit clusterIP).
    pub fn reserve(&mut self, ip: std::net::IpAddr) -> Result<()> {
        if !self.used.insert(ip) {
            bail!("cluster IP {ip} is already allocated");
        }
        Ok(())
    }
    /// Frees an address.
    pub fn release(&mut self, ip: std::net::IpAddr) {
        self.used.remove(&ip);
    }
    /// A fresh pair of addresses with the same host part.
    pub fn allocate(&mut self) -> Result<(Ipv4Addr, Ipv6Addr)> {
        for _ in 0..65000 {
            self.next = (self.next + 1) % 65000;
            let n = self.next + 10;
            let v4 = Ipv4Addr::new(10, 96, (n >> 8) as u8, n as u8);
            let v6 = Ipv6Addr::new(0xfd96, 0, 0, 0, 0, 0, 0, n as u16);
            if !self.used.contains(&v4.into()) && !self.used.contains(&v6.into()) {
                self.used.insert(v4.into());
                self.used.insert(v6.into());
                return Ok((v4, v6));
            }
        }
        bail!("cluster IP range exhausted")
    }
}

/// A ready pod as the slice builder sees it.
#[derive(Debug, Clone)]
pub struct EndpointPod<'a> {
    /// Pod name.
    pub name: &'a str,
    /// Pod uid.
    pub uid: &'a str,
    /// Labels.
    pub labels: &'a Labels,
    /// IPv4.
    pub ipv4: Ipv4Addr,
    /// IPv6.
    pub ipv6: Ipv6Addr,
    /// Container ports.
    pub ports: &'a [ContainerPort],
    /// spec.nodeName of the pod.
    pub node_name: &'a str,
}

/// Resolves the Service ports against a pod's container ports; ports whose
/// named targetPort the pod lacks are left out.
pub fn resolve_ports(svc: &[ServicePort], pod_ports: &[ContainerPort]) -> Vec<SlicePort> {
    svc.iter()
        .filter_map(|p| {
            let port = match &p.target {
                TargetPort::Number(n) => *n,
                TargetPort::Named(name) => {
                    pod_ports.iter().find(|(n, _)| n.as_deref() == Some(name.as_str()))?.1
                }
            };
            Some(SlicePort { name: p.name.clone(), port, app_protocol: p.app_protocol.clone() })
        })
        .collect()
}

/// The (ports, IPv4 endpoints, IPv6 endpoints) of a Service's slices, from
/// the ready pods of its namespace.
pub fn slice_contents(
    svc: &ServiceRecord,
    pods: &[EndpointPod<'_>],
) -> Option<(Vec<SlicePort>, Vec<SliceEndpoint>, Vec<SliceEndpoint>)> {
    let selector = svc.selector.as_ref()?;
    let chosen: Vec<&EndpointPod<'_>> = pods.iter().filter(|p| selects(selector, p.labels)).collect();
    let ports = match chosen.first() {
        Some(p) => resolve_ports(&svc.ports, p.ports),
        None => resolve_ports(&svc.ports, &[]),
    };
    let ep = |p: &EndpointPod<'_>, addr: String| SliceEndpoint {
        address: addr,
        pod: p.name.to_string(),
        uid: p.uid.to_string(),
        node_name: p.node_name.to_string(),
    };
    let v4 = chosen.iter().map(|p| ep(p, p.ipv4.to_string())).collect();
    let v6 = chosen.iter().map(|p| ep(p, p.ipv6.to_string())).collect();
    Some((ports, v4, v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_manifests_shapes() {
        let docs = parse_documents(
            "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: n}\nspec:\n  selector: {app: a}\n  ports:\n  - {name: http, port: 80, targetPort: 8080, appProtocol: http}\n  - {name: alt, port: 8080}\n  - {name: named, port: 81, targetPort: web}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: n}\nspec:\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers:\n      - name: c\n        ports: [{containerPort: 8080, name: web}]\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        let ports = service_ports(&docs[0]).unwrap();
        assert_eq!(ports[0].target, TargetPort::Number(8080));
        assert_eq!(ports[1].target, TargetPort::Number(8080));
        assert_eq!(ports[2].target, TargetPort::Named("web".into()));
        let d = deployment_spec(&docs[1]).unwrap();
        assert_eq!(d.replicas, 1);
        assert_eq!(d.labels.get("app").map(String::as_str), Some("a"));
        let resolved = resolve_ports(&ports, &d.ports);
        assert_eq!(resolved.iter().map(|p| p.port).collect::<Vec<_>>(), vec![8080, 8080, 8080]);
        assert_eq!(resolve_ports(&ports, &[]).len(), 2);
        assert_eq!(service_families(&docs[0], false), (true, false));
        assert_eq!(service_families(&docs[0], true), (true, true));
    }

    #[test]
    fn allocator_skips_reserved() {
        let mut a = ClusterIpAllocator::default();
        a.reserve("10.96.0.11".parse().unwrap()).unwrap();
        let (v4, v6) = a.allocate().unwrap();
        assert_eq!(v4, Ipv4Addr::new(10, 96, 0, 12));
        assert_eq!(v6, "fd96::c".parse::<Ipv6Addr>().unwrap());
        assert!(a.reserve("10.96.0.11".parse().unwrap()).is_err());
    }
}
