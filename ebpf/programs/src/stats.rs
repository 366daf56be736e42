//! Per-CPU event counters (`AMBIT_STATS`), indexed by `Stat`.

use ambit_ebpf_common::Stat;

use crate::maps::AMBIT_STATS;

/// Adds one to the counter `stat` on this CPU.
#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(slot) = AMBIT_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot; programs on one CPU do not run concurrently with each other.
        unsafe { *slot += 1 };
    }
}
