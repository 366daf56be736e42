//! The cluster network of a multi-node bed: a bridge `br0` in its own network
//! namespace (`ambit-<id>-cluster`) with one veth port `n<i>` per node; the
//! node's end is its `eth0`, holding the node addresses 10.77.0.i/24 and
//! fd77::i/64. Each node routes the other nodes' pod ranges via their node
//! address; nothing routes out of the bed. `br0` is promiscuous so that a
//! packet socket on it (see [`crate::capture`]) sees every frame between nodes.

use anyhow::Result;

use crate::bed_node::{BedNode, CLUSTER_NET_V4_PREFIX, CLUSTER_NET_V6_PREFIX, POD_RANGE_V4_PREFIX, POD_RANGE_V6_PREFIX};
use crate::netns;

/// The bridge joining the nodes, inside the cluster namespace.
pub const BRIDGE: &str = "br0";
/// The node's interface on the cluster network.
pub const NODE_IFACE: &str = "eth0";

/// Creates the cluster namespace `cluster_ns` with its bridge.
pub fn create(cluster_ns: &str) -> Result<()> {
    netns::create(cluster_ns)?;
    // No IPv6 on the bridge itself: a capture then holds only the nodes' frames.
    netns::sysctls(
        cluster_ns,
        &[("net/ipv6/conf/all/disable_ipv6", "1"), ("net/ipv6/conf/default/disable_ipv6", "1")],
    )?;
    netns::ip_batch(
        cluster_ns,
        &[
            format!("link add {BRIDGE} type bridge"),
            format!("link set {BRIDGE} promisc on"),
            format!("link set {BRIDGE} up"),
        ],
    )
}

/// Plugs `node` (whose namespace exists) into the bridge and gives it its
/// addresses and routes to the pod ranges of every node in `all`.
pub fn attach(cluster_ns: &str, node: &BedNode, all: &[BedNode]) -> Result<()> {
    let port = format!("n{}", node.index());
    netns::create_veth(cluster_ns, &port, node.netns(), NODE_IFACE)?;
    netns::ip_batch(cluster_ns, &[format!("link set {port} master {BRIDGE}"), format!("link set {port} up")])?;
    let mut lines = vec![
        format!("addr add {}/{CLUSTER_NET_V4_PREFIX} dev {NODE_IFACE}", node.ipv4()),
        format!("addr add {}/{CLUSTER_NET_V6_PREFIX} dev {NODE_IFACE} nodad", node.ipv6()),
        format!("link set {NODE_IFACE} up"),
    ];
    for other in all.iter().filter(|o| o.index() != node.index()) {
        lines.push(format!(
            "route add {}/{POD_RANGE_V4_PREFIX} via {} dev {NODE_IFACE}",
            other.pod_range_v4(),
            other.ipv4()
        ));
        lines.push(format!(
            "route add {}/{POD_RANGE_V6_PREFIX} via {} dev {NODE_IFACE}",
            other.pod_range_v6(),
            other.ipv6()
        ));
    }
    netns::ip_batch(node.netns(), &lines)
}
