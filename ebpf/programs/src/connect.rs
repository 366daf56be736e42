//! `cgroup/connect4` and `cgroup/connect6`: redirect enrolled pods' TCP connects to
//! Service VIP:ports to the node proxy.
//!
//! Returning 1 lets connect() proceed (possibly to a rewritten address); returning 0
//! makes it fail with EPERM. That happens when the redirect cannot be recorded, when
//! the pod already holds its quota of tracked sockets ([`crate::quota`]), and for
//! MPTCP sockets of enrolled pods dialling a Service: those cannot be redirected (the
//! proxy would see subflows, not the recorded socket), so they are refused, never
//! let through around the mesh.

use ambit_ebpf_common::{Addr, LimitStat, Redirect, ServiceKey, Stat, MAX_CGROUP_DEPTH};
use aya_ebpf::bindings::bpf_sock_addr;
use aya_ebpf::helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_socket_cookie};
use aya_ebpf::programs::SockAddrContext;
use aya_ebpf::EbpfContext;

use crate::addr::{self, AF_INET, AF_INET6};
use crate::maps::{AMBIT_ENROLLED, AMBIT_PROXY, AMBIT_SERVICES, AMBIT_SOCKETS};
use crate::quota::{self, Refused};
use crate::stats::{count, count_limit};

const ALLOW: i32 = 1;
const REFUSE: i32 = 0;
const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_MPTCP: u32 = 262;

/// Where to send a redirected connect, in the form the socket's family needs.
enum Target {
    V4(u32),
    V6([u32; 4]),
}

pub fn connect4(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: `sa` is the context the kernel passed; these fields are readable.
    let (ip4, user_port) = unsafe { ((*sa).user_ip4, (*sa).user_port) };
    let dest = addr::from_ip4(ip4);
    handle(ctx, sa, dest, addr::port_from_user(user_port), AF_INET)
}

pub fn connect6(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: as above; user_ip6 is read one 32-bit word at a time.
    let (words, user_port) = unsafe {
        (
            [
                core::ptr::read_volatile(&(*sa).user_ip6[0]),
                core::ptr::read_volatile(&(*sa).user_ip6[1]),
                core::ptr::read_volatile(&(*sa).user_ip6[2]),
                core::ptr::read_volatile(&(*sa).user_ip6[3]),
            ],
            (*sa).user_port,
        )
    };
    let dest = addr::from_ip6(words);
    handle(ctx, sa, dest, addr::port_from_user(user_port), AF_INET6)
}

#[inline(always)]
fn handle(ctx: &SockAddrContext, sa: *mut bpf_sock_addr, dest: Addr, port: u16, family: u32) -> i32 {
    // SAFETY: readable context fields.
    let (ty, protocol) = unsafe { ((*sa).type_, (*sa).protocol) };
    let mptcp = ty == SOCK_STREAM && protocol == IPPROTO_MPTCP;
    if ty != SOCK_STREAM || (protocol != IPPROTO_TCP && !mptcp) {
        count(Stat::SkippedNotTcp);
        return ALLOW;
    }
    // Cheapest rejection first: one hash lookup settles most connects (anything that
    // is not a Service VIP:port), before the ancestor walk's up to 17 lookups.
    if AMBIT_SERVICES.get_ptr(ServiceKey::new(dest, port)).is_none() {
        count(Stat::SkippedNotService);
        return ALLOW;
    }
    let Some(pod_cgroup) = enrolled_pod_cgroup() else {
        count(Stat::SkippedNotEnrolled);
        return ALLOW;
    };
    if mptcp {
        count_limit(LimitStat::Mptcp);
        return REFUSE;
    }
    let Some((target, proxy_port)) = proxy_target(family, &dest) else {
        count(Stat::SkippedNoProxy);
        return ALLOW;
    };

    // SAFETY: helper calls with the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let sock_cgroup = unsafe { bpf_get_current_cgroup_id() };
    let record = Redirect {
        orig_addr: dest,
        orig_port: port,
        family: family as u16,
        _pad: 0,
        pod_cgroup,
        sock_cgroup,
    };
    let slot = match quota::check(pod_cgroup) {
        Ok(slot) => slot,
        Err(Refused::Quota) => {
            count_limit(LimitStat::PodQuota);
            return REFUSE;
        }
        Err(Refused::NoRoom) => {
            count(Stat::TrackingFull);
            return REFUSE;
        }
    };
    if AMBIT_SOCKETS.insert(cookie, record, 0).is_err() {
        // Without a record the proxy could not tell where this connection was going:
        // refuse it rather than let it bypass the mesh.
        count(Stat::TrackingFull);
        return REFUSE;
    }
    quota::taken(slot);

    // SAFETY: user_ip4/user_ip6/user_port are writable in connect hooks; user_ip6 is
    // written one 32-bit word at a time as the verifier requires.
    unsafe {
        match target {
            Target::V4(ip) => (*sa).user_ip4 = ip,
            Target::V6(words) => {
                core::ptr::write_volatile(&mut (*sa).user_ip6[0], words[0]);
                core::ptr::write_volatile(&mut (*sa).user_ip6[1], words[1]);
                core::ptr::write_volatile(&mut (*sa).user_ip6[2], words[2]);
                core::ptr::write_volatile(&mut (*sa).user_ip6[3], words[3]);
            }
        }
        (*sa).user_port = addr::port_to_user(proxy_port);
    }
    count(Stat::Redirected);
    ALLOW
}

/// The deepest enrolled cgroup among the caller's cgroup and its ancestors.
#[inline(always)]
fn enrolled_pod_cgroup() -> Option<u64> {
    let mut found = None;
    let mut level = 0;
    while level < MAX_CGROUP_DEPTH {
        // SAFETY: plain helper call.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        if is_enrolled(id) {
            found = Some(id);
        }
        level += 1;
    }
    // SAFETY: plain helper call.
    let own = unsafe { bpf_get_current_cgroup_id() };
    if is_enrolled(own) {
        found = Some(own);
    }
    found
}

/// Whether `cgroup` is in `AMBIT_ENROLLED`. Reads the value (volatile) rather than only testing the
/// pointer) so the compiler cannot merge several lookups' pointers with bitwise
/// operations, which the verifier rejects.
#[inline(always)]
fn is_enrolled(cgroup: u64) -> bool {
    // SAFETY: a non-null lookup result points at the value; the volatile read cannot
    // be optimised away, so the null check stays a branch.
    AMBIT_ENROLLED
        .get_ptr(cgroup)
        .map(|p| unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*p).flags)) })
        .is_some()
}

/// The proxy address for a socket of `family` dialling `dest`, if configured.
#[inline(always)]
fn proxy_target(family: u32, dest: &Addr) -> Option<(Target, u16)> {
    let proxy = AMBIT_PROXY.get(0)?;
    if family == AF_INET {
        if proxy.has_v4 == 0 {
            return None;
        }
        return Some((Target::V4(u32::from_ne_bytes(proxy.addr4)), proxy.port));
    }
    if addr::is_v4_mapped(dest) {
        if proxy.has_v4 == 0 {
            return None;
        }
        let mapped = ambit_ebpf_common::v4_mapped(proxy.addr4);
        return Some((Target::V6(addr::to_ip6(&mapped)), proxy.port));
    }
    if proxy.has_v6 == 0 {
        return None;
    }
    Some((Target::V6(addr::to_ip6(&proxy.addr6)), proxy.port))
}
