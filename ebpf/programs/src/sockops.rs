//! `sockops`: hands established redirected connections to the proxy's lookup map and
//! removes what is left of them when they close.
//!
//! Byte orders in `bpf_sock_ops` (include/uapi/linux/bpf.h): `local_port` is host
//! order; `remote_port` is network order, and on little-endian kernels it sits in the
//! upper 16 bits of the word (older kernels put it in the lower 16), so both placements
//! are accepted (a connected socket never has remote port 0). Addresses are network
//! order words. An IPv6 socket connected to an IPv4-mapped address reports mapped
//! addresses, which is the form user space builds from the proxy's plain IPv4 view.

use ambit_ebpf_common::{ConnKey, Stat};
use aya_ebpf::helpers::bpf_get_socket_cookie;
use aya_ebpf::programs::SockOpsContext;
use aya_ebpf::EbpfContext;

use crate::addr::{self, AF_INET, AF_INET6};
use crate::maps::{AMBIT_CONNS, AMBIT_SOCKETS};
use crate::release;
use crate::stats::count;

const BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: u32 = 4;
const BPF_SOCK_OPS_STATE_CB: u32 = 10;
const BPF_SOCK_OPS_STATE_CB_FLAG: u32 = 1 << 2;
const BPF_TCP_CLOSE: u32 = 7;

pub fn handle(ctx: &SockOpsContext) -> u32 {
    match ctx.op() {
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => established(ctx),
        BPF_SOCK_OPS_STATE_CB => {
            // arg 0 is the old state, arg 1 the new one. A socket already closed (say,
            // reset by its peer) passes through TCP_CLOSE again when the application
            // closes it: only the first entry counts.
            if ctx.arg(1) == BPF_TCP_CLOSE && ctx.arg(0) != BPF_TCP_CLOSE {
                closed(ctx);
            }
        }
        _ => {}
    }
    1
}

#[inline(always)]
fn cookie(ctx: &SockOpsContext) -> u64 {
    // SAFETY: helper call with the program's own context.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

fn established(ctx: &SockOpsContext) {
    let cookie = cookie(ctx);
    // SAFETY: copied out at once.
    let Some(record) = (unsafe { AMBIT_SOCKETS.get(cookie).copied() }) else {
        return;
    };
    let Some(key) = conn_key(ctx) else {
        return;
    };
    if AMBIT_CONNS.insert(key, record, 0).is_err() {
        // The proxy will find no record and refuse the connection.
        count(Stat::TrackingFull);
        return;
    }
    let flags = ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG;
    if ctx.set_cb_flags(flags as i32).is_err() {
        // Without the state callback the entry could never be removed: withdraw it.
        let _ = AMBIT_CONNS.remove(key);
        return;
    }
    count(Stat::Established);
}

/// Only sockets whose record was published get the state callback, so each close
/// here is one `Established` connection ending. The proxy usually deleted the
/// `AMBIT_CONNS` entry already, once it had looked it up: a missing entry is normal.
fn closed(ctx: &SockOpsContext) {
    if let Some(key) = conn_key(ctx) {
        let _ = AMBIT_CONNS.remove(key);
    }
    count(Stat::Closed);
    release::forget(cookie(ctx));
}

/// Reads one `u32` field of the context with a single 32-bit load at a constant offset
/// (the verifier rejects loads through a ctx pointer the compiler has offset).
macro_rules! field {
    ($ops:expr, $($f:tt)+) => {
        // SAFETY: `$ops` is the kernel-provided context; the field is readable.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$ops).$($f)+)) }
    };
}

/// The connection as the proxy sees it: client = this socket's local end,
/// proxy = its remote end.
#[inline(always)]
fn conn_key(ctx: &SockOpsContext) -> Option<ConnKey> {
    let ops = ctx.ops;
    // Every field is read up front, unconditionally: loads in separate branches get
    // their ctx address computation hoisted and shared, which the verifier rejects.
    let family = field!(ops, family);
    let local4 = field!(ops, local_ip4);
    let remote4 = field!(ops, remote_ip4);
    let local6 = [
        field!(ops, local_ip6[0]),
        field!(ops, local_ip6[1]),
        field!(ops, local_ip6[2]),
        field!(ops, local_ip6[3]),
    ];
    let remote6 = [
        field!(ops, remote_ip6[0]),
        field!(ops, remote_ip6[1]),
        field!(ops, remote_ip6[2]),
        field!(ops, remote_ip6[3]),
    ];
    let remote_port = field!(ops, remote_port);
    let local_port = field!(ops, local_port);

    let (client_addr, proxy_addr) = if family == AF_INET {
        (addr::from_ip4(local4), addr::from_ip4(remote4))
    } else if family == AF_INET6 {
        (addr::from_ip6(local6), addr::from_ip6(remote6))
    } else {
        return None;
    };
    let remote = if remote_port > 0xffff {
        remote_port >> 16
    } else {
        remote_port
    };
    Some(ConnKey {
        client_addr,
        proxy_addr,
        client_port: local_port as u16,
        proxy_port: u16::from_be(remote as u16),
        _pad: 0,
    })
}
