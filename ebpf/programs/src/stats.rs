//! Per-CPU event counters: `AMBIT_STATS` indexed by `Stat`, `AMBIT_LIMIT_STATS` by `LimitStat`.

use ambit_ebpf_common::{LimitStat, Stat};

use crate::maps::{AMBIT_LIMIT_STATS, AMBIT_STATS};

/// Adds one to the counter `stat` on this CPU.
#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(slot) = AMBIT_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot; programs on one CPU do not run concurrently with each other.
        unsafe { *slot += 1 };
    }
}

/// Adds one to the refusal counter `stat` on this CPU.
#[inline(always)]
pub fn count_limit(stat: LimitStat) {
    if let Some(slot) = AMBIT_LIMIT_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: as in `count`.
        unsafe { *slot += 1 };
    }
}
