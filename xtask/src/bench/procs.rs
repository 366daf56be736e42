//! Processes under test: finding them, pinning them to a CPU, and reading their
//! CPU time and memory from /proc.

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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).context("no utime")?.parse()?;
    let stime: f64 = f.get(12).context("no stime")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((utime + stime) / hz)
}

/// Resident set size of `pid` in bytes (VmRSS).
pub fn rss_bytes(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kib: u64 = line.split_whitespace().nth(1).context("malformed VmRSS")?.parse()?;
    Ok(kib * 1024)
}
