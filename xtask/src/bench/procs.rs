//! Processes under test: finding them, pinning them to a CPU, and reading their
//! CPU time and memory from /proc.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The pids listed in a cgroup's `cgroup.procs`.
pub fn cgroup_pids(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The pid of the process whose command line contains every one of `needles`.
pub fn find_pid(needles: &[&str]) -> Option<i32> {
    let me = std::process::id() as i32;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().all(|n| cmdline.contains(n)) {
            return Some(pid);
        }
    }
    None
}

/// Pins every thread of `pid` to `cpu` (`taskset -a -p`); later threads inherit it.
pub fn pin(pid: i32, cpu: usize) -> Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .output()
        .context("running taskset (util-linux)")?;
    if !out.status.success() {
        bail!("taskset -a -p -c {cpu} {pid}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Pins every thread of `pid` to `cpus`.
pub fn pin_to(pid: i32, cpus: &[usize]) -> Result<()> {
    let list = super::world::cpu_list(cpus);
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &list, &pid.to_string()])
        .output()
        .context("running taskset (util-linux)")?;
    if !out.status.success() {
        bail!("taskset -a -p -c {list} {pid}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (cpus < CPU_SETSIZE).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    set
}

/// Runs `f` with this thread pinned to `cpus`, so that processes it starts begin
/// there (a child inherits its parent thread's affinity); restores the mask after.
pub fn with_affinity<T>(cpus: &[usize], f: impl FnOnce() -> T) -> Result<T> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: plain data, filled by the kernel below.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the sets are valid for `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut saved) } != 0 {
        bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
    }
    let set = cpu_set(cpus);
    if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
        bail!("sched_setaffinity to CPUs {cpus:?}: {}", std::io::Error::last_os_error());
    }
    let out = f();
    if unsafe { libc::sched_setaffinity(0, size, &saved) } != 0 {
        bail!("restoring this thread's affinity: {}", std::io::Error::last_os_error());
    }
    Ok(out)
}

/// Fails unless every thread of `pid` may run on exactly `cpus` (sorted), as /proc's
/// `Cpus_allowed_list` says.
pub fn check_pinned(pid: i32, cpus: &[usize]) -> Result<()> {
    let want = super::world::cpu_list(cpus);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let Some(allowed) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) else { continue };
        let parsed = parse_cpu_list(allowed.trim());
        if parsed.as_deref() != Some(cpus) {
            bail!("thread {:?} of {pid} may run on CPUs {}, expected {want}", task.file_name(), allowed.trim());
        }
    }
    Ok(())
}

/// Parses a kernel CPU list (`0-2,5`) into sorted CPUs; None if malformed.
pub fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// How many threads of `pid` are named `name` (the first 15 bytes, as `comm` keeps).
pub fn threads_named(pid: i32, name: &str) -> usize {
    let short = &name[..name.len().min(15)];
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == short))
                .count()
        })
        .unwrap_or(0)
}

/// This process's open-file limit (soft, hard).
pub fn own_nofile() -> Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises this process's open-file limit to `n` (soft and hard), which the proxies and
/// load generators it starts inherit; where raising the hard limit is not permitted
/// (no CAP_SYS_RESOURCE), the soft limit goes up to the hard one. Returns the limit
/// now in force.
pub fn raise_own_nofile(n: u64) -> Result<u64> {
    let (_, hard) = own_nofile()?;
    for lim in [libc::rlimit { rlim_cur: n, rlim_max: n.max(hard) }, libc::rlimit { rlim_cur: hard, rlim_max: hard }] {
        // SAFETY: setrlimit reads the struct passed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
            return Ok(lim.rlim_cur);
        }
    }
    bail!("raising the open-file limit: {}", std::io::Error::last_os_error())
}

/// Raises the open-file soft limit of `pid` to this process's hard limit (`prlimit`),
/// for the many-connections scenario.
pub fn raise_nofile(pid: i32) -> Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit failed");
    }
    let n = lim.rlim_max;
    let status = Command::new("prlimit")
        .args([&format!("--pid={pid}"), &format!("--nofile={n}:{n}")])
        .status()
        .context("running prlimit (util-linux)")?;
    if !status.success() {
        bail!("prlimit --pid {pid} failed");
    }
    Ok(())
}

/// User + system CPU time of `pid` (all its threads), in seconds.
pub fn cpu_seconds(pid: i32) -> Result<f64> {
    stat_times(pid).map(|(user, system)| user + system)
}

/// User and system CPU time of `pid` (all its threads) from /proc, in seconds.
fn stat_times(pid: i32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = |i: usize| -> Result<f64> { Ok(f.get(i).context("short stat")?.parse::<f64>()? / hz) };
    Ok((ticks(11)?, ticks(12)?))
}

/// CPU time of `pid`'s live threads in seconds, to the nanosecond: the sum of each
/// thread's run time in `/proc/<pid>/task/*/schedstat`. [`cpu_seconds`] counts in
/// clock ticks (10 ms), too coarse for a mostly idle process; threads that ended are
/// not counted here.
pub fn cpu_seconds_fine(pid: i32) -> Result<f64> {
    cpu_use(pid).map(|u| u.run_s)
}

/// How a process used the CPU so far (all its threads; user and system time in clock
/// ticks, the rest summed over its live threads): subtract two samples for a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUse {
    pub user_s: f64,
    pub system_s: f64,
    /// Times a thread gave up the CPU to wait (a wake-up follows each).
    pub voluntary_switches: u64,
    /// Seconds the live threads ran, to the nanosecond (schedstat).
    pub run_s: f64,
    /// Seconds the threads spent runnable but waiting for a CPU.
    pub run_delay_s: f64,
}

impl std::ops::Sub for CpuUse {
    type Output = CpuUse;
    fn sub(self, o: CpuUse) -> CpuUse {
        CpuUse {
            user_s: self.user_s - o.user_s,
            system_s: self.system_s - o.system_s,
            voluntary_switches: self.voluntary_switches.saturating_sub(o.voluntary_switches),
            run_s: self.run_s - o.run_s,
            run_delay_s: self.run_delay_s - o.run_delay_s,
        }
    }
}

/// A [`CpuUse`] sample of `pid`.
pub fn cpu_use(pid: i32) -> Result<CpuUse> {
    let (user_s, system_s) = stat_times(pid)?;
    let mut sample = CpuUse { user_s, system_s, ..CpuUse::default() };
    for t in threads(pid)?.values() {
        sample.voluntary_switches += t.voluntary_switches;
        sample.run_s += t.run_s;
        sample.run_delay_s += t.run_delay_s;
    }
    Ok(sample)
}

/// One thread's scheduler counts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThreadSched {
    pub voluntary_switches: u64,
    pub run_s: f64,
    pub run_delay_s: f64,
}

/// The scheduler counts of each live thread of `pid`, by thread id.
fn threads(pid: i32) -> Result<BTreeMap<i32, ThreadSched>> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("listing /proc/{pid}/task"))? {
        let task = task?;
        let Ok(tid) = task.file_name().to_string_lossy().parse::<i32>() else { continue };
        let dir = task.path();
        // A thread may end between the listing and the reads.
        let (Ok(status), Ok(schedstat)) =
            (std::fs::read_to_string(dir.join("status")), std::fs::read_to_string(dir.join("schedstat")))
        else {
            continue;
        };
        let voluntary_switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut fields = schedstat.split_whitespace();
        let mut next_ns = || -> Result<f64> { Ok(fields.next().context("short schedstat")?.parse::<u64>()? as f64 / 1e9) };
        let (run_s, run_delay_s) = (next_ns()?, next_ns()?);
        out.insert(tid, ThreadSched { voluntary_switches, run_s, run_delay_s });
    }
    Ok(out)
}

/// A sample of `pid` that keeps its threads apart: [`ThreadedSample::since`] counts
/// each thread alive at the later sample from its own earlier count (from zero if it
/// started in between), so that a thread ending in between subtracts nothing.
#[derive(Clone, Debug, Default)]
pub struct ThreadedSample {
    user_s: f64,
    system_s: f64,
    threads: BTreeMap<i32, ThreadSched>,
}

impl ThreadedSample {
    pub fn take(pid: i32) -> Result<ThreadedSample> {
        let (user_s, system_s) = stat_times(pid)?;
        Ok(ThreadedSample { user_s, system_s, threads: threads(pid)? })
    }

    /// The use between `before` and this sample (utime and stime count every thread,
    /// ended ones too; the rest, the threads alive now).
    pub fn since(&self, before: &ThreadedSample) -> CpuUse {
        let mut used = CpuUse { user_s: self.user_s - before.user_s, system_s: self.system_s - before.system_s, ..CpuUse::default() };
        for (tid, now) in &self.threads {
            let then = before.threads.get(tid).copied().unwrap_or_default();
            used.voluntary_switches += now.voluntary_switches.saturating_sub(then.voluntary_switches);
            used.run_s += now.run_s - then.run_s;
            used.run_delay_s += now.run_delay_s - then.run_delay_s;
        }
        used
    }
}

/// Resident set size of `pid` in bytes (VmRSS).
pub fn rss_bytes(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kib: u64 = line.split_whitespace().nth(1).context("malformed VmRSS")?.parse()?;
    Ok(kib * 1024)
}

/// The RSS of each of `pids` once their sum has stopped falling: read every second
/// until it fell by less than 1% (or 256 KiB) in that second, for at most 15 s. An
/// allocator that returns freed pages on a schedule (the agent's jemalloc: about a
/// second) is still giving back the previous scenario's memory right after it; a
/// "before" read then would count that return against the connections measured next.
pub fn settled_rss(pids: &[i32]) -> Result<Vec<u64>> {
    let read = || pids.iter().map(|&p| rss_bytes(p)).collect::<Result<Vec<u64>>>();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut last = read()?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let now = read()?;
        let (before, after) = (last.iter().sum::<u64>(), now.iter().sum::<u64>());
        let fell = before.saturating_sub(after);
        if fell < (before / 100).max(256 << 10) || std::time::Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::{cpu_use, parse_cpu_list, ThreadSched, ThreadedSample};

    #[test]
    fn a_thread_that_ended_subtracts_nothing_and_a_new_one_counts_in_full() {
        let t = |switches: u64, run_s: f64, run_delay_s: f64| ThreadSched { voluntary_switches: switches, run_s, run_delay_s };
        let before = ThreadedSample { user_s: 1.0, system_s: 0.5, threads: [(1, t(10, 1.0, 0.1)), (2, t(500, 9.0, 2.0))].into() };
        let after = ThreadedSample { user_s: 1.5, system_s: 0.75, threads: [(1, t(15, 1.25, 0.15)), (3, t(4, 0.5, 0.05))].into() };
        let used = after.since(&before);
        assert_eq!(used.voluntary_switches, 5 + 4, "{used:?}");
        assert!((used.run_s - 0.75).abs() < 1e-9 && (used.run_delay_s - 0.1).abs() < 1e-9, "{used:?}");
        assert!((used.user_s - 0.5).abs() < 1e-9 && (used.system_s - 0.25).abs() < 1e-9, "{used:?}");
        let live = ThreadedSample::take(std::process::id() as i32).expect("sample");
        assert!(!live.threads.is_empty() && live.threads.contains_key(&(std::process::id() as i32)), "{live:?}");
    }

    #[test]
    fn a_busy_thread_shows_in_its_own_cpu_use() {
        let pid = std::process::id() as i32;
        let before = cpu_use(pid).expect("sample");
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let used = cpu_use(pid).expect("sample") - before;
        assert!(used.user_s + used.system_s >= 0.1, "{used:?}");
        assert!(used.run_s >= 0.1, "schedstat's run time counts the busy loop too: {used:?}");
        assert!(used.voluntary_switches >= 1, "the sleep is a voluntary switch: {used:?}");
    }

    #[test]
    fn cpu_lists_parse_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-2,5,4"), Some(vec![0, 1, 2, 4, 5]));
        for bad in ["", "a", "2-1", "0,", "-1"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_child_started_under_with_affinity_begins_pinned() {
        let mut child = super::with_affinity(&[0], || std::process::Command::new("sleep").arg("5").spawn()).unwrap().unwrap();
        let pid = child.id() as i32;
        let pinned = super::check_pinned(pid, &[0]);
        let _ = child.kill();
        let _ = child.wait();
        pinned.unwrap();
    }
}
