//! How many CPUs this process may use, for the data path's default worker count: the
//! CPUs of its affinity mask, bounded by the CPU quota of its cgroup (cgroup v2
//! `cpu.max`, the lowest of its own cgroup and every ancestor's).
//!
//! A quota of 1.5 CPUs gives 2 workers: one worker could use only one of them. A host
//! whose `cpu` controller is on cgroup v1 (hybrid hierarchy) has no `cpu.max` in the
//! v2 tree, and only the affinity mask counts.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// A cgroup's CPU bandwidth limit: `quota_us` of CPU time per `period_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuQuota {
    quota_us: NonZeroUsize,
    period_us: NonZeroUsize,
}

impl CpuQuota {
    /// The whole CPUs this quota lets a process keep busy, rounded up.
    pub fn cpus(self) -> NonZeroUsize {
        let (q, p) = (self.quota_us.get(), self.period_us.get());
        NonZeroUsize::new(q.div_ceil(p)).unwrap_or(NonZeroUsize::MIN)
    }
}

/// A `cpu.max` that is neither `max PERIOD` nor `QUOTA PERIOD`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cpu.max is not \"max PERIOD\" or \"QUOTA PERIOD\" with positive integers: {0:?}")]
pub struct CpuMaxError(String);

/// Parses a cgroup v2 `cpu.max` (`max 100000` or `150000 100000`); None: no limit.
pub fn parse_cpu_max(text: &str) -> Result<Option<CpuQuota>, CpuMaxError> {
    let error = || CpuMaxError(text.to_owned());
    let mut fields = text.split_whitespace();
    let (Some(quota), Some(period), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(error());
    };
    let period_us = period.parse().map_err(|_| error())?;
    if quota == "max" {
        return Ok(None);
    }
    let quota_us = quota.parse().map_err(|_| error())?;
    Ok(Some(CpuQuota { quota_us, period_us }))
}

/// This process's cgroup v2 path (relative to the cgroup2 mount) from
/// `/proc/self/cgroup`: the `0::` line's path. None when there is none.
pub fn own_cgroup_in(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup.lines().find_map(|line| line.strip_prefix("0::"))
}

/// `cgroup` (a path below `mount`) and its ancestors up to `mount`, deepest first.
pub fn cgroup_and_ancestors(mount: &Path, cgroup: &str) -> Vec<PathBuf> {
    let mut dir = mount.to_path_buf();
    let mut out = vec![dir.clone()];
    for part in cgroup.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..") {
        dir.push(part);
        out.push(dir.clone());
    }
    out.reverse();
    out
}

/// The CPUs a process may use: `affinity`, lowered by the tightest of `quotas`.
pub fn usable_cpus_from(affinity: NonZeroUsize, quotas: impl IntoIterator<Item = CpuQuota>) -> NonZeroUsize {
    quotas.into_iter().map(CpuQuota::cpus).fold(affinity, std::cmp::min)
}

/// The CPUs in this process's affinity mask (None if it cannot be read).
fn affinity_cpus() -> Option<NonZeroUsize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; `set` is valid for writes of the size passed.
    let ret = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ret != 0 {
        return None;
    }
    // SAFETY: `set` was filled by the kernel.
    NonZeroUsize::new(unsafe { libc::CPU_COUNT(&set) } as usize)
}

/// The `cpu.max` limits of this process's cgroup and its ancestors (unreadable or
/// absent files are no limit; a malformed one is logged and ignored).
fn own_quotas() -> Vec<CpuQuota> {
    let Ok(mount) = crate::cgroups::cgroup2_mount() else { return Vec::new() };
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else { return Vec::new() };
    let Some(own) = own_cgroup_in(&text) else { return Vec::new() };
    cgroup_and_ancestors(&mount, own)
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("cpu.max")).ok())
        .filter_map(|text| match parse_cpu_max(&text) {
            Ok(quota) => quota,
            Err(error) => {
                tracing::warn!(%error, "ignoring a CPU quota");
                None
            }
        })
        .collect()
}

/// How many CPUs this process may use: its affinity mask bounded by its cgroup's CPU
/// quota; the machine's count (`available_parallelism`) if the mask cannot be read.
pub fn usable_cpus() -> NonZeroUsize {
    let affinity = affinity_cpus()
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN);
    usable_cpus_from(affinity, own_quotas())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(x: usize) -> NonZeroUsize {
        NonZeroUsize::new(x).unwrap()
    }

    #[test]
    fn cpu_max_parses_limits_and_no_limit() {
        assert_eq!(parse_cpu_max("max 100000\n"), Ok(None));
        let q = parse_cpu_max("150000 100000\n").unwrap().unwrap();
        assert_eq!(q.cpus(), n(2), "1.5 CPUs round up");
        assert_eq!(parse_cpu_max("100000 100000").unwrap().unwrap().cpus(), n(1));
        assert_eq!(parse_cpu_max("10000 100000").unwrap().unwrap().cpus(), n(1), "a tenth is still one");
        assert_eq!(parse_cpu_max("400000 100000").unwrap().unwrap().cpus(), n(4));
        for bad in ["", "max", "0 100000", "100000 0", "-1 100000", "max 100000 1", "abc 100000", "max x"] {
            assert!(parse_cpu_max(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_cgroup_is_the_unified_line() {
        let hybrid = "12:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(own_cgroup_in(hybrid), Some("/user.slice/session-1.scope"));
        assert_eq!(own_cgroup_in("0::/\n"), Some("/"));
        assert_eq!(own_cgroup_in("3:memory:/x\n"), None);
    }

    #[test]
    fn ancestors_run_from_the_cgroup_up_to_the_mount() {
        let dirs = cgroup_and_ancestors(Path::new("/sys/fs/cgroup"), "/kubepods/pod1/ctr");
        let want = ["/sys/fs/cgroup/kubepods/pod1/ctr", "/sys/fs/cgroup/kubepods/pod1", "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup"];
        assert_eq!(dirs, want.iter().map(PathBuf::from).collect::<Vec<_>>());
        assert_eq!(cgroup_and_ancestors(Path::new("/m"), "/"), vec![PathBuf::from("/m")]);
        assert_eq!(cgroup_and_ancestors(Path::new("/m"), "/../a"), vec![PathBuf::from("/m/a"), PathBuf::from("/m")]);
    }

    #[test]
    fn the_tightest_of_affinity_and_quotas_wins() {
        let q = |quota: &str| parse_cpu_max(quota).unwrap().unwrap();
        assert_eq!(usable_cpus_from(n(8), []), n(8));
        assert_eq!(usable_cpus_from(n(8), [q("250000 100000")]), n(3));
        assert_eq!(usable_cpus_from(n(2), [q("400000 100000")]), n(2), "a quota above the mask does not add CPUs");
        assert_eq!(usable_cpus_from(n(8), [q("400000 100000"), q("50000 100000")]), n(1), "an ancestor's lower quota counts");
    }

    #[test]
    fn a_thread_pinned_to_one_cpu_may_use_one() {
        let pinned = std::thread::spawn(|| {
            // SAFETY: as in `affinity_cpus`; CPU_SET writes inside `set`.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(0, &mut set) };
            // SAFETY: pid 0 is this (spawned) thread only.
            let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
            assert_eq!(ret, 0, "sched_setaffinity: {}", std::io::Error::last_os_error());
            usable_cpus()
        });
        assert_eq!(pinned.join().unwrap(), n(1));
        let machine = std::thread::available_parallelism().unwrap();
        assert!(affinity_cpus().unwrap() <= machine.max(affinity_cpus().unwrap()));
        assert!(usable_cpus() <= affinity_cpus().unwrap());
    }
}
