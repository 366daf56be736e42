//! tc (tcx) egress on the node side of each guarded pod's veth: STRICT mode.
//!
//! Every packet the node sends into a guarded pod passes here. A TCP SYN (SYN without
//! ACK) to a guarded pod address (`AMBIT_GUARDED_PODS`) is let through only when it
//! was generated on this node by a socket of a trusted cgroup (`AMBIT_TRUSTED_CGROUPS`:
//! the agent's, the kubelet's). Forwarded packets (other pods, other nodes, pods
//! outside the mesh) carry no socket any more and are dropped, as are SYNs of local
//! sockets in other cgroups (hostNetwork processes). Everything else passes: replies to
//! the pod's own connections, established traffic, UDP and ICMP.
//!
//! Packets whose TCP header cannot be read (a first fragment too short to hold it) and
//! IPv6 packets with extension headers are treated like SYNs: only trusted sockets
//! may send them, so no header trick gets a SYN past the check.

use ambit_ebpf_common::{v4_mapped, Addr, StrictStat};
use aya_ebpf::helpers::bpf_skb_cgroup_id;
use aya_ebpf::programs::TcContext;

use crate::maps::{AMBIT_GUARDED_PODS, AMBIT_STRICT_STATS, AMBIT_TRUSTED_CGROUPS};

/// `TC_ACT_UNSPEC` (tcx: `TCX_NEXT`): no verdict, later programs and the stack decide.
const PASS: i32 = -1;
/// `TC_ACT_SHOT`: drop.
const DROP: i32 = 2;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_NONE: u8 = 59;
const IPV6_HLEN: usize = 40;
const TCP_FLAGS: usize = 13;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// What follows the IP header, as far as STRICT cares.
enum L4 {
    /// A TCP header at this offset.
    Tcp(usize),
    /// Not TCP, or a later fragment (no TCP header): passes.
    Other,
    /// Could hide a TCP header (IPv6 extension headers): only trusted sockets.
    Unparsed,
}

pub fn handle(ctx: &TcContext) -> i32 {
    let Some((dest, l4)) = parse(ctx) else { return PASS };
    if AMBIT_GUARDED_PODS.get_ptr(&dest).is_none() {
        return PASS;
    }
    match l4 {
        L4::Other => PASS,
        L4::Unparsed => admit(ctx, StrictStat::DroppedUnparsed),
        L4::Tcp(offset) => match ctx.load::<u8>(offset + TCP_FLAGS) {
            Ok(flags) if flags & SYN == 0 || flags & ACK != 0 => PASS,
            Ok(_) => admit(ctx, StrictStat::DroppedUntrusted),
            Err(_) => admit(ctx, StrictStat::DroppedUnparsed),
        },
    }
}

/// Passes the packet when its socket belongs to a trusted cgroup; otherwise drops it
/// and counts `untrusted` (or `DroppedForwarded` when it has no local socket).
#[inline(always)]
fn admit(ctx: &TcContext, untrusted: StrictStat) -> i32 {
    // SAFETY: helper call with the program's own context.
    let cgroup = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    if cgroup == 0 {
        count(StrictStat::DroppedForwarded);
        return DROP;
    }
    if AMBIT_TRUSTED_CGROUPS.get_ptr(&cgroup).is_some() {
        count(StrictStat::Trusted);
        return PASS;
    }
    count(untrusted);
    DROP
}

/// The destination address and what follows the IP header; None when not IP.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<(Addr, L4)> {
    let proto = u16::from_be(ctx.load::<u16>(12).ok()?);
    match proto {
        ETH_P_IP => parse_v4(ctx),
        ETH_P_IPV6 => parse_v6(ctx),
        _ => None,
    }
}

#[inline(always)]
fn parse_v4(ctx: &TcContext) -> Option<(Addr, L4)> {
    let ip = ETH_HLEN;
    let ihl = usize::from(ctx.load::<u8>(ip).ok()? & 0x0f) * 4;
    let frag = u16::from_be(ctx.load::<u16>(ip + 6).ok()?);
    let proto = ctx.load::<u8>(ip + 9).ok()?;
    let dest = ctx.load::<[u8; 4]>(ip + 16).ok()?;
    let l4 = if proto != IPPROTO_TCP || frag & 0x1fff != 0 {
        L4::Other
    } else if ihl < 20 {
        L4::Unparsed
    } else {
        L4::Tcp(ip + ihl)
    };
    Some((v4_mapped(dest), l4))
}

#[inline(always)]
fn parse_v6(ctx: &TcContext) -> Option<(Addr, L4)> {
    let ip = ETH_HLEN;
    let next = ctx.load::<u8>(ip + 6).ok()?;
    let dest = ctx.load::<Addr>(ip + 24).ok()?;
    let l4 = match next {
        IPPROTO_TCP => L4::Tcp(ip + IPV6_HLEN),
        IPPROTO_UDP | IPPROTO_ICMPV6 | IPPROTO_NONE => L4::Other,
        _ => L4::Unparsed,
    };
    Some((dest, l4))
}

#[inline(always)]
fn count(stat: StrictStat) {
    if let Some(slot) = AMBIT_STRICT_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot; programs on one CPU do not run concurrently with each other.
        unsafe { *slot += 1 };
    }
}
