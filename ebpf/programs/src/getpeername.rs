//! `cgroup/getpeername4` and `cgroup/getpeername6`: a redirected socket reports the
//! Service address it dialled as its peer, not the proxy.

use ambit_ebpf_common::Redirect;
use aya_ebpf::helpers::bpf_get_socket_cookie;
use aya_ebpf::programs::SockAddrContext;
use aya_ebpf::EbpfContext;

use crate::addr;
use crate::maps::AMBIT_SOCKETS;

/// getpeername hooks must return 1.
const OK: i32 = 1;

#[inline(always)]
fn record(ctx: &SockAddrContext) -> Option<Redirect> {
    // SAFETY: helper call with the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: copied out at once; a concurrent delete at worst yields a stale copy.
    unsafe { AMBIT_SOCKETS.get(cookie).copied() }
}

pub fn getpeername4(ctx: &SockAddrContext) -> i32 {
    if let Some(r) = record(ctx) {
        let sa = ctx.sock_addr;
        // SAFETY: user_ip4/user_port are writable in getpeername4.
        unsafe {
            (*sa).user_ip4 = addr::to_ip4(&r.orig_addr);
            (*sa).user_port = addr::port_to_user(r.orig_port);
        }
    }
    OK
}

pub fn getpeername6(ctx: &SockAddrContext) -> i32 {
    if let Some(r) = record(ctx) {
        let sa = ctx.sock_addr;
        let words = addr::to_ip6(&r.orig_addr);
        // SAFETY: user_ip6/user_port are writable in getpeername6, one word at a time.
        unsafe {
            core::ptr::write_volatile(&mut (*sa).user_ip6[0], words[0]);
            core::ptr::write_volatile(&mut (*sa).user_ip6[1], words[1]);
            core::ptr::write_volatile(&mut (*sa).user_ip6[2], words[2]);
            core::ptr::write_volatile(&mut (*sa).user_ip6[3], words[3]);
            (*sa).user_port = addr::port_to_user(r.orig_port);
        }
    }
    OK
}
