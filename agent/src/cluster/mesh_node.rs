//! What the store keeps of a `MeshNode` (the mesh directory, see [`crate::directory`]):
//! the node's addresses and its pods' IPs and identities, parsed, with namespaces and
//! service accounts shared between nodes.

use std::net::IpAddr;
use std::sync::Arc;

use super::intern::intern;
use crate::directory::MeshNode;

/// A `MeshNode` as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMeshNode {
    pub resource_version: Option<Box<str>>,
    /// The node's addresses that are IPs.
    pub addresses: Box<[IpAddr]>,
    pub workloads: Box<[MeshWorkload]>,
}

/// One pod of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshWorkload {
    pub namespace: Arc<str>,
    pub service_account: Arc<str>,
    /// Its IPs that are IP addresses.
    pub ips: Box<[IpAddr]>,
}

fn parsed(values: &[String]) -> Box<[IpAddr]> {
    values.iter().filter_map(|v| v.parse().ok()).collect()
}

impl From<&MeshNode> for StoredMeshNode {
    fn from(node: &MeshNode) -> Self {
        let workloads = node
            .spec
            .workloads
            .iter()
            .map(|w| MeshWorkload { namespace: intern(&w.namespace), service_account: intern(&w.service_account), ips: parsed(&w.ips) })
            .collect();
        Self {
            resource_version: node.metadata.resource_version.as_deref().map(Into::into),
            addresses: parsed(&node.spec.addresses),
            workloads,
        }
    }
}

impl StoredMeshNode {
    /// The node's address of `ip`'s family.
    pub fn address_for(&self, ip: IpAddr) -> Option<IpAddr> {
        self.addresses.iter().copied().find(|a| a.is_ipv4() == ip.is_ipv4())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{DirectoryEntry, MeshNodeSpec};

    #[test]
    fn parses_addresses_and_shares_names() {
        let entry = |sa: &str, ips: &[&str]| DirectoryEntry {
            namespace: "shop".into(),
            service_account: sa.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
        };
        let spec = MeshNodeSpec {
            addresses: vec!["10.0.0.1".into(), "bogus".into(), "fd00::1".into()],
            workloads: vec![entry("a", &["10.1.0.1", "x"]), entry("a", &["fd01::1"])],
        };
        let node = StoredMeshNode::from(&MeshNode::new("n", spec));
        assert_eq!(node.addresses.len(), 2);
        assert_eq!(node.address_for("10.9.9.9".parse().unwrap()), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(node.address_for("fd09::9".parse().unwrap()), Some("fd00::1".parse().unwrap()));
        assert_eq!(&*node.workloads[0].ips, ["10.1.0.1".parse::<IpAddr>().unwrap()]);
        assert!(Arc::ptr_eq(&node.workloads[0].namespace, &node.workloads[1].namespace));
    }
}
