//! Ambit's eBPF programs.
//!
//! - [`connect`]: `cgroup/connect4` and `cgroup/connect6` send enrolled pods' TCP
//!   connects to Service VIP:ports to the node proxy and record where they were going.
//! - [`sockops`]: on establishment, publishes the redirect under the connection's
//!   address pair for the proxy (`AMBIT_CONNS`); on close, removes it again.
//! - [`release`]: `cgroup/sock_release` forgets sockets that never became established.
//! - [`getpeername`]: `cgroup/getpeername4/6` show the application the VIP, not the proxy.
//! - [`strict`]: tc egress on guarded (STRICT) pods' host-side veths: only trusted
//!   local sockets (the node proxy, the kubelet) may open TCP connections to them.
//!
//! The maps live in [`maps`]; counters in [`stats`]; the per-pod quota in [`quota`].
#![no_std]
#![no_main]
// Atomic adds on map values (`quota`): `AtomicU64` has no fetch_add on this target.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod addr;
mod connect;
mod getpeername;
mod maps;
mod quota;
mod release;
mod sockops;
mod stats;
mod strict;

use aya_ebpf::macros::{cgroup_sock, cgroup_sock_addr, classifier, sock_ops};
use aya_ebpf::programs::{SockAddrContext, SockContext, SockOpsContext, TcContext};

#[cgroup_sock_addr(connect4)]
pub fn ambit_connect4(ctx: SockAddrContext) -> i32 {
    connect::connect4(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn ambit_connect6(ctx: SockAddrContext) -> i32 {
    connect::connect6(&ctx)
}

#[sock_ops]
pub fn ambit_sockops(ctx: SockOpsContext) -> u32 {
    sockops::handle(&ctx)
}

#[cgroup_sock(sock_release)]
pub fn ambit_sock_release(ctx: SockContext) -> i32 {
    release::handle(&ctx)
}

#[cgroup_sock_addr(getpeername4)]
pub fn ambit_getpeername4(ctx: SockAddrContext) -> i32 {
    getpeername::getpeername4(&ctx)
}

#[cgroup_sock_addr(getpeername6)]
pub fn ambit_getpeername6(ctx: SockAddrContext) -> i32 {
    getpeername::getpeername6(&ctx)
}

#[classifier]
pub fn ambit_strict(ctx: TcContext) -> i32 {
    strict::handle(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
