//! The per-pod quota of tracked sockets (`AMBIT_POD_SOCKETS`, limit in `AMBIT_LIMITS`).
//!
//! A pod's count goes up when the connect hook records one of its sockets in
//! `AMBIT_SOCKETS` and down when that record is deleted (sockops close or
//! sock_release, whichever deletes it: only a successful delete decrements, so a
//! socket is never subtracted twice). One pod at its quota is refused on its own; the
//! shared map keeps room for every other pod.
//!
//! The check and the increment are separate steps, so concurrent connects of one pod
//! on several CPUs can pass the quota by at most one socket per CPU.

use core::intrinsics::{atomic_xadd, atomic_xsub, AtomicOrdering};

use crate::maps::{AMBIT_LIMITS, AMBIT_POD_SOCKETS};

/// `BPF_NOEXIST`.
const NOEXIST: u64 = 1;

/// Why a pod may not record another socket.
pub enum Refused {
    /// The pod holds its quota.
    Quota,
    /// No count could be created for the pod (`AMBIT_POD_SOCKETS` full).
    NoRoom,
}

/// The pod's counter, created at zero on first use.
#[inline(always)]
fn counter(pod: u64) -> Option<*mut u64> {
    if let Some(p) = AMBIT_POD_SOCKETS.get_ptr_mut(pod) {
        return Some(p);
    }
    // EEXIST (a concurrent first connect of the same pod) is fine: look it up again.
    let _ = AMBIT_POD_SOCKETS.insert(pod, 0, NOEXIST);
    AMBIT_POD_SOCKETS.get_ptr_mut(pod)
}

/// Checks that `pod` is under its quota; returns its counter for [`taken`].
#[inline(always)]
pub fn check(pod: u64) -> Result<*mut u64, Refused> {
    let Some(slot) = counter(pod) else {
        return Err(Refused::NoRoom);
    };
    let quota = AMBIT_LIMITS.get(0).map_or(0, |l| l.per_pod_sockets) as u64;
    // SAFETY: `slot` points at the map value; read volatile so the load happens here.
    let live = unsafe { core::ptr::read_volatile(slot) };
    if quota != 0 && live >= quota {
        return Err(Refused::Quota);
    }
    Ok(slot)
}

/// Counts one more recorded socket on the counter [`check`] returned.
#[inline(always)]
pub fn taken(slot: *mut u64) {
    // SAFETY: map values are 8-byte aligned and live while the program runs.
    // (`AtomicU64` has no read-modify-write on the BPF target; the intrinsic lowers to
    // the BPF atomic add.)
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, 1) };
}

/// Counts one recorded socket of `pod` gone (its `AMBIT_SOCKETS` entry was deleted).
#[inline(always)]
pub fn released(pod: u64) {
    let Some(slot) = AMBIT_POD_SOCKETS.get_ptr_mut(pod) else {
        return;
    };
    // SAFETY: as in `taken`. A count already at zero (a socket recorded by an agent
    // older than the quota) is left alone rather than wrapped.
    unsafe {
        if core::ptr::read_volatile(slot) > 0 {
            atomic_xsub::<u64, u64, { AtomicOrdering::Relaxed }>(slot, 1);
        }
    }
}
