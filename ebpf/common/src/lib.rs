//! Types shared between Ambit's eBPF programs (`ebpf/programs`) and user space.
//!
//! Every type here is `#[repr(C)]`, has no implicit padding and is `Copy`, so the
//! kernel and user space agree on its bytes. Addresses are always 16 bytes: IPv4
//! addresses are stored IPv4-mapped (`::ffff:a.b.c.d`), so one map serves both
//! families. Ports are in host byte order.
#![no_std]

/// Names of the maps, as they appear in the object file and under the pin directory.
pub mod map_names {
    /// `cgroup id -> EnrolledPod`: pod cgroups whose connections are redirected.
    pub const ENROLLED: &str = "AMBIT_ENROLLED";
    /// `ServiceKey -> ServiceValue`: Service cluster IP:port pairs that are redirected.
    pub const SERVICES: &str = "AMBIT_SERVICES";
    /// Single-entry array holding the proxy listener (`ProxyTarget`).
    pub const PROXY: &str = "AMBIT_PROXY";
    /// `socket cookie -> Redirect`: every live client socket that was redirected.
    pub const SOCKETS: &str = "AMBIT_SOCKETS";
    /// `ConnKey -> Redirect`: established redirected connections, looked up by the proxy.
    pub const CONNS: &str = "AMBIT_CONNS";
    /// Per-CPU counters, indexed by `Stat`.
    pub const STATS: &str = "AMBIT_STATS";
    /// `pod cgroup id -> u64`: live tracked sockets (`AMBIT_SOCKETS` entries) per pod.
    pub const POD_SOCKETS: &str = "AMBIT_POD_SOCKETS";
    /// Single-entry array holding the quotas (`Limits`), written by user space.
    pub const LIMITS: &str = "AMBIT_LIMITS";
    /// Per-CPU counters of refusals, indexed by `LimitStat` (a map of its own so that the
    /// pinned `AMBIT_STATS` keeps its size across upgrades).
    pub const LIMIT_STATS: &str = "AMBIT_LIMIT_STATS";
    /// `Addr -> GuardedPod`: local pods in STRICT mode (only the node proxy may open TCP to them).
    pub const GUARDED_PODS: &str = "AMBIT_GUARDED_PODS";
    /// `cgroup id -> TrustedCgroup`: cgroups whose sockets may open TCP to guarded pods.
    pub const TRUSTED_CGROUPS: &str = "AMBIT_TRUSTED_CGROUPS";
    /// Per-CPU counters of the STRICT hook, indexed by `StrictStat`.
    pub const STRICT_STATS: &str = "AMBIT_STRICT_STATS";
}

/// Maximum number of guarded (STRICT) pod addresses on one node.
pub const MAX_GUARDED: u32 = 16_384;
/// Maximum number of trusted cgroups (the agent's, the kubelet's, extra probe cgroups).
pub const MAX_TRUSTED_CGROUPS: u32 = 64;

/// Value of `AMBIT_GUARDED_PODS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardedPod {
    /// Reserved for per-pod modes; zero (STRICT) today.
    pub flags: u32,
    pub _pad: u32,
}

/// Value of `AMBIT_TRUSTED_CGROUPS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedCgroup {
    /// Why the cgroup is trusted (`TrustReason`), for dumps; the hook ignores it.
    pub reason: u32,
    pub _pad: u32,
}

/// Why a cgroup is in `AMBIT_TRUSTED_CGROUPS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustReason {
    /// The agent's own cgroup (its proxy dials guarded pods).
    Agent = 0,
    /// A probe cgroup (the kubelet's), for health checks.
    Probe = 1,
}

/// Indexes of `AMBIT_STRICT_STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrictStat {
    /// Dropped: a SYN to a guarded pod without a local socket (forwarded: another pod,
    /// another node, a pod outside the mesh).
    DroppedForwarded = 0,
    /// Dropped: a SYN to a guarded pod from a local socket of an untrusted cgroup
    /// (a hostNetwork process of this node).
    DroppedUntrusted = 1,
    /// Dropped: a packet to a guarded pod whose TCP header could not be read, or an
    /// IPv6 packet with extension headers, from an untrusted source.
    DroppedUnparsed = 2,
    /// Passed: a SYN to a guarded pod from a trusted cgroup.
    Trusted = 3,
}

/// Number of `StrictStat` slots (room to grow without resizing the pinned map).
pub const STRICT_STAT_COUNT: u32 = 8;

/// Maximum number of enrolled pod cgroups.
pub const MAX_ENROLLED: u32 = 16_384;
/// Maximum number of Service VIP:port pairs.
pub const MAX_SERVICES: u32 = 65_536;
/// Maximum number of concurrently tracked redirected sockets (and connections).
pub const MAX_TRACKED: u32 = 262_144;
/// Maximum number of pods with a socket count in `AMBIT_POD_SOCKETS`.
pub const MAX_POD_COUNTS: u32 = MAX_ENROLLED;
/// How many cgroup ancestors the connect hooks examine, from the socket's own cgroup upwards.
pub const MAX_CGROUP_DEPTH: u32 = 16;

/// A 16-byte address: IPv6, or IPv4-mapped IPv6.
pub type Addr = [u8; 16];

/// Builds the IPv4-mapped form of an IPv4 address given as its four octets.
pub const fn v4_mapped(octets: [u8; 4]) -> Addr {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3]]
}

/// Value of `AMBIT_ENROLLED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrolledPod {
    /// Reserved for per-pod flags; zero today.
    pub flags: u32,
    pub _pad: u32,
}

/// Key of `AMBIT_SERVICES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub addr: Addr,
    pub port: u16,
    pub _pad: [u8; 6],
}

impl ServiceKey {
    pub const fn new(addr: Addr, port: u16) -> Self {
        Self { addr, port, _pad: [0; 6] }
    }
}

/// Value of `AMBIT_SERVICES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceValue {
    /// Reserved for per-service flags; zero today.
    pub flags: u32,
    pub _pad: u32,
}

/// Value of `AMBIT_PROXY` (index 0): where redirected connections go.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyTarget {
    /// IPv4 listener address (network order octets); used when `has_v4 != 0`.
    pub addr4: [u8; 4],
    /// IPv6 listener address; used when `has_v6 != 0`.
    pub addr6: Addr,
    pub port: u16,
    pub has_v4: u8,
    pub has_v6: u8,
    pub _pad: [u8; 4],
}

/// Value of `AMBIT_LIMITS` (index 0): quotas the connect hooks enforce.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most live tracked sockets one pod cgroup may hold; 0 means no quota (the zeroed
    /// map before user space writes it).
    pub per_pod_sockets: u32,
    pub _pad: u32,
}

/// What the connect hook recorded about one redirected socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The Service address the application dialled.
    pub orig_addr: Addr,
    pub orig_port: u16,
    /// `AF_INET` or `AF_INET6`: the family of the socket that dialled (an IPv6 socket
    /// dialling an IPv4-mapped VIP reports `AF_INET6`).
    pub family: u16,
    pub _pad: u32,
    /// Id of the enrolled pod cgroup (an ancestor of, or equal to, the socket's cgroup).
    pub pod_cgroup: u64,
    /// Id of the socket's own (container) cgroup.
    pub sock_cgroup: u64,
}

/// Key of `AMBIT_CONNS`: the redirected connection as the proxy sees it after accept().
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The client's address (the proxy's peer).
    pub client_addr: Addr,
    /// The proxy's address (the client's destination after redirection).
    pub proxy_addr: Addr,
    pub client_port: u16,
    pub proxy_port: u16,
    pub _pad: u32,
}

/// Indexes of `AMBIT_STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// A connect() was redirected to the proxy.
    Redirected = 0,
    /// Skipped: the caller's cgroup is not enrolled.
    SkippedNotEnrolled = 1,
    /// Skipped: the destination is not a known Service VIP:port.
    SkippedNotService = 2,
    /// Skipped: not a TCP socket (UDP, e.g. DNS).
    SkippedNotTcp = 3,
    /// Refused: the tracking map was full, so the connect() failed (fail closed).
    TrackingFull = 4,
    /// A redirected connection became established and was handed to the proxy's lookup map.
    Established = 5,
    /// A tracked connection closed and its entries were removed.
    Closed = 6,
    /// Skipped: no proxy listener is configured for this address family.
    SkippedNoProxy = 7,
}

/// Number of `Stat` slots.
pub const STAT_COUNT: u32 = 8;

/// Indexes of `AMBIT_LIMIT_STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitStat {
    /// Refused: the calling pod already held its quota of tracked sockets.
    PodQuota = 0,
    /// Refused: an MPTCP connect() to a Service from an enrolled pod (never bypassed).
    Mptcp = 1,
}

/// Number of `LimitStat` slots (room to grow without resizing the pinned map).
pub const LIMIT_STAT_COUNT: u32 = 8;

#[cfg(feature = "user")]
mod user {
    // SAFETY: all these types are repr(C), Copy, and have no implicit padding.
    unsafe impl aya::Pod for super::EnrolledPod {}
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::ProxyTarget {}
    unsafe impl aya::Pod for super::Redirect {}
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::Limits {}
    unsafe impl aya::Pod for super::GuardedPod {}
    unsafe impl aya::Pod for super::TrustedCgroup {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<EnrolledPod>(), 8);
        assert_eq!(size_of::<ServiceKey>(), 24);
        assert_eq!(size_of::<ServiceValue>(), 8);
        assert_eq!(size_of::<ProxyTarget>(), 28);
        assert_eq!(size_of::<Redirect>(), 40);
        assert_eq!(size_of::<ConnKey>(), 40);
        assert_eq!(size_of::<Limits>(), 8);
        assert_eq!(size_of::<GuardedPod>(), 8);
        assert_eq!(size_of::<TrustedCgroup>(), 8);
    }

    #[test]
    fn v4_mapped_form() {
        assert_eq!(v4_mapped([10, 96, 0, 1])[10..], [0xff, 0xff, 10, 96, 0, 1]);
    }
}
