//! The maps, all pinned by name so that a restarted agent finds them again.
//!
//! Sizes come from `ambit_ebpf_common`. They are plain hash maps, not LRU: an entry
//! leaves only when its socket closes, so nothing in use is ever evicted and the
//! counts user space reads are exact.
//!
//! When full:
//! - `AMBIT_SOCKETS` (`MAX_TRACKED`): the connect hook cannot record a redirect, so it
//!   refuses the connect() (EPERM) and counts `TrackingFull`: fail closed, never bypass.
//! - `AMBIT_CONNS` (`MAX_TRACKED`): cannot fill up before `AMBIT_SOCKETS` does, since
//!   every entry has a live tracked socket; should an insert still fail, the proxy finds
//!   no record and refuses the connection.
//! - `AMBIT_ENROLLED` / `AMBIT_SERVICES` / `AMBIT_GUARDED_PODS` / `AMBIT_TRUSTED_CGROUPS`:
//!   user space reports the failed update.
//!
//! - `AMBIT_POD_SOCKETS` (`MAX_POD_COUNTS`): a pod without a count cannot get one, so
//!   its redirected connect is refused (EPERM, `TrackingFull`). User space drops the
//!   counts of pods no longer enrolled once they reach zero.
//!
//! `AMBIT_SOCKETS` and `AMBIT_CONNS` are not preallocated (`BPF_F_NO_PREALLOC`), so
//! their kernel memory follows the number of live redirected connections rather than
//! the maximum.

use ambit_ebpf_common::{
    Addr, ConnKey, EnrolledPod, GuardedPod, Limits, ProxyTarget, Redirect, ServiceKey, ServiceValue, TrustedCgroup,
    LIMIT_STAT_COUNT, MAX_ENROLLED, MAX_GUARDED, MAX_POD_COUNTS, MAX_SERVICES, MAX_TRACKED, MAX_TRUSTED_CGROUPS,
    STAT_COUNT, STRICT_STAT_COUNT,
};
use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, PerCpuArray};

/// `BPF_F_NO_PREALLOC`.
const NO_PREALLOC: u32 = 1;

#[map]
pub static AMBIT_ENROLLED: HashMap<u64, EnrolledPod> = HashMap::pinned(MAX_ENROLLED, 0);

#[map]
pub static AMBIT_SERVICES: HashMap<ServiceKey, ServiceValue> = HashMap::pinned(MAX_SERVICES, 0);

#[map]
pub static AMBIT_PROXY: Array<ProxyTarget> = Array::pinned(1, 0);

#[map]
pub static AMBIT_SOCKETS: HashMap<u64, Redirect> = HashMap::pinned(MAX_TRACKED, NO_PREALLOC);

#[map]
pub static AMBIT_CONNS: HashMap<ConnKey, Redirect> = HashMap::pinned(MAX_TRACKED, NO_PREALLOC);

#[map]
pub static AMBIT_STATS: PerCpuArray<u64> = PerCpuArray::pinned(STAT_COUNT, 0);

#[map]
pub static AMBIT_POD_SOCKETS: HashMap<u64, u64> = HashMap::pinned(MAX_POD_COUNTS, 0);

#[map]
pub static AMBIT_LIMITS: Array<Limits> = Array::pinned(1, 0);

#[map]
pub static AMBIT_LIMIT_STATS: PerCpuArray<u64> = PerCpuArray::pinned(LIMIT_STAT_COUNT, 0);

#[map]
pub static AMBIT_GUARDED_PODS: HashMap<Addr, GuardedPod> = HashMap::pinned(MAX_GUARDED, 0);

#[map]
pub static AMBIT_TRUSTED_CGROUPS: HashMap<u64, TrustedCgroup> = HashMap::pinned(MAX_TRUSTED_CGROUPS, 0);

#[map]
pub static AMBIT_STRICT_STATS: PerCpuArray<u64> = PerCpuArray::pinned(STRICT_STAT_COUNT, 0);
