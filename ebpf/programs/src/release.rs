//! `cgroup/sock_release`: forget redirected sockets, including those that never
//! became established (refused or timed-out connects).

use aya_ebpf::helpers::bpf_get_socket_cookie;
use aya_ebpf::programs::SockContext;
use aya_ebpf::EbpfContext;

use crate::maps::AMBIT_SOCKETS;

pub fn handle(ctx: &SockContext) -> i32 {
    // SAFETY: helper call with the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // Most released sockets were never redirected: ENOENT is the normal outcome.
    let _ = AMBIT_SOCKETS.remove(cookie);
    1
}
