//! `cgroup/sock_release`: forget redirected sockets, including those that never
//! became established (refused or timed-out connects).

use aya_ebpf::helpers::bpf_get_socket_cookie;
use aya_ebpf::programs::SockContext;
use aya_ebpf::EbpfContext;

use crate::maps::AMBIT_SOCKETS;
use crate::quota;

pub fn handle(ctx: &SockContext) -> i32 {
    // SAFETY: helper call with the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    forget(cookie);
    1
}

/// Deletes the socket's record, if any, and returns it to its pod's quota. Only the
/// caller whose delete succeeded decrements, so a socket is released once.
#[inline(always)]
pub fn forget(cookie: u64) {
    // SAFETY: copied out at once. Most sockets were never redirected: no record.
    let Some(pod) = (unsafe { AMBIT_SOCKETS.get(cookie).map(|r| r.pod_cgroup) }) else {
        return;
    };
    if AMBIT_SOCKETS.remove(cookie).is_ok() {
        quota::released(pod);
    }
}
