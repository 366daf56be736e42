//! One node of a test bed: its names, addresses, pod address ranges and cgroup
//! subtree. Node 1 keeps the one-node bed's names and addresses, so a one-node
//! bed looks exactly as it always did.
//!
//! | node `i` | netns | `spec.nodeName` | node IP | pod range | cgroup root | pin dir |
//! |---|---|---|---|---|---|---|
//! | 1 | `ambit-<id>-node` | `ambit-node-<id>` | 10.77.0.1, fd77::1 | 10.244.0.0/19, fd44::/112 | `ambit-bed-<id>` | `ambit-e2e-<id>` |
//! | i ≥ 2 | `ambit-<id>-node<i>` | `ambit-node-<id>-<i>` | 10.77.0.i, fd77::i | 10.244.32(i-1).0/19, fd44::(i-1):0/112 | `ambit-bed-<id>-n<i>` | `ambit-e2e-<id>-n<i>` |

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The most nodes a bed has (node addresses are 10.77.0.1..=N).
pub const MAX_NODES: usize = 8;
/// Prefix length of a node's IPv4 pod range (8190 pod addresses per node).
pub const POD_RANGE_V4_PREFIX: u8 = 19;
/// Prefix length of a node's IPv6 pod range.
pub const POD_RANGE_V6_PREFIX: u8 = 112;
/// Prefix length of the cluster network (node addresses) on the nodes' `eth0`.
pub const CLUSTER_NET_V4_PREFIX: u8 = 24;
/// IPv6 prefix length of the cluster network.
pub const CLUSTER_NET_V6_PREFIX: u8 = 64;

/// One node of a bed (see the module documentation for the naming).
#[derive(Debug, Clone)]
pub struct BedNode {
    index: usize,
    name: String,
    netns: String,
    cgroup_root: PathBuf,
    pin_dir_name: String,
}

impl BedNode {
    /// Node `index` (1-based) of bed `id`, its cgroup root under `cgroup_mount`.
    pub(crate) fn new(id: &str, index: usize, cgroup_mount: &Path) -> Result<BedNode> {
        if index == 0 || index > MAX_NODES {
            bail!("node index {index} out of range 1..={MAX_NODES}");
        }
        let suffix = |sep: &str| if index == 1 { String::new() } else { format!("{sep}{index}") };
        Ok(BedNode {
            index,
            name: format!("ambit-node-{id}{}", suffix("-")),
            netns: format!("{}{id}-node{}", crate::bed::PREFIX, suffix("")),
            cgroup_root: cgroup_mount.join(format!("ambit-bed-{id}{}", suffix("-n"))),
            pin_dir_name: format!("ambit-e2e-{id}{}", suffix("-n")),
        })
    }

    /// 1-based index.
    pub fn index(&self) -> usize {
        self.index
    }
    /// `spec.nodeName` of its pods (the agent's `--node-name`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Name of its network namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }
    /// Its cgroup subtree (its agent's `--cgroup-root`).
    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }
    /// Name of its agent's pin directory under the bpffs mount.
    pub fn pin_dir_name(&self) -> &str {
        &self.pin_dir_name
    }
    /// Node IPv4 address: 10.77.0.<index>.
    pub fn ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, self.index as u8)
    }
    /// Node IPv6 address: fd77::<index>.
    pub fn ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, self.index as u16)
    }
    /// Start of its IPv4 pod range (10.244.32(i-1).0/19).
    pub fn pod_range_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, (32 * (self.index - 1)) as u8, 0)
    }
    /// Start of its IPv6 pod range (fd44::(i-1):0/112).
    pub fn pod_range_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd44, 0, 0, 0, 0, 0, (self.index - 1) as u16, 0)
    }
    /// The IPv4 address of the bed's `n`-th pod network (2 ≤ n < 8190) on this node.
    pub fn pod_ipv4(&self, n: u32) -> Result<Ipv4Addr> {
        if !(1..(1 << (32 - POD_RANGE_V4_PREFIX)) - 1).contains(&n) {
            bail!("pod number {n} does not fit in a node's /{POD_RANGE_V4_PREFIX}");
        }
        Ok(Ipv4Addr::from(u32::from(self.pod_range_v4()) + n))
    }
    /// The IPv6 address of the bed's `n`-th pod network on this node.
    pub fn pod_ipv6(&self, n: u32) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.pod_range_v6()) + u128::from(n as u16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_one_keeps_the_one_node_names_and_addresses() {
        let n = BedNode::new("7-0", 1, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(n.netns(), "ambit-7-0-node");
        assert_eq!(n.name(), "ambit-node-7-0");
        assert_eq!(n.cgroup_root(), Path::new("/sys/fs/cgroup/ambit-bed-7-0"));
        assert_eq!(n.pin_dir_name(), "ambit-e2e-7-0");
        assert_eq!(n.ipv4(), crate::bed::NODE_IPV4);
        assert_eq!(n.ipv6(), crate::bed::NODE_IPV6);
        assert_eq!(n.pod_ipv4(2).unwrap(), Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(n.pod_ipv4(300).unwrap(), Ipv4Addr::new(10, 244, 1, 44));
        assert_eq!(n.pod_ipv6(2), "fd44::2".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn other_nodes_get_their_own_names_and_ranges() {
        let n = BedNode::new("7-0", 3, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(n.netns(), "ambit-7-0-node3");
        assert_eq!(n.name(), "ambit-node-7-0-3");
        assert_eq!(n.cgroup_root(), Path::new("/sys/fs/cgroup/ambit-bed-7-0-n3"));
        assert_eq!(n.pin_dir_name(), "ambit-e2e-7-0-n3");
        assert_eq!(n.ipv4(), Ipv4Addr::new(10, 77, 0, 3));
        assert_eq!(n.pod_ipv4(5).unwrap(), Ipv4Addr::new(10, 244, 64, 5));
        assert_eq!(n.pod_ipv6(5), "fd44::2:5".parse::<Ipv6Addr>().unwrap());
        assert!(n.pod_ipv4(8191).is_err());
        assert!(BedNode::new("7-0", 0, Path::new("/")).is_err());
        assert!(BedNode::new("7-0", MAX_NODES + 1, Path::new("/")).is_err());
    }
}
