//! The cgroups whose sockets may open connections to guarded pods: the agent's own
//! (its proxy dials them) and the probe cgroups (the kubelet's, for health checks).
//!
//! A cgroup v2 id is the inode number of its directory, which is what
//! `bpf_skb_cgroup_id` reports for a packet's socket.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ambit_ebpf_common::TrustReason;
use anyhow::{bail, Context};

/// One trusted cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trusted {
    pub id: u64,
    pub path: PathBuf,
    pub reason: TrustReason,
}

/// The id of the cgroup directory `path`.
pub fn cgroup_id(path: &Path) -> anyhow::Result<u64> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading cgroup {}", path.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a cgroup directory", path.display());
    }
    Ok(meta.ino())
}

/// The cgroup directory (under `mount`, the node's cgroup v2 hierarchy) of process `pid`.
///
/// `/proc/<pid>/cgroup` names it relative to the reader's cgroup namespace: from a
/// container with its own namespace the agent's cgroup reads `/` and the kubelet's
/// `/../..`-something, while the mounted cgroupfs is the node's. So the named path is
/// only a hint, accepted when its `cgroup.procs` lists `pid`; otherwise the tree is
/// searched for the cgroup whose `cgroup.procs` does (once, at start).
pub fn process_cgroup(mount: &Path, pid: u32) -> anyhow::Result<PathBuf> {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let hint = unified_path(&text).with_context(|| format!("{file} names no cgroup v2 path"))?;
    if !hint.components().any(|c| matches!(c, std::path::Component::ParentDir)) && lists(&mount.join(&hint), pid) {
        return Ok(mount.join(hint));
    }
    search(mount, pid, 0).with_context(|| format!("no cgroup under {} lists process {pid}", mount.display()))
}

/// How deep [`search`] descends (kubelet pod cgroups are about 5 levels down).
const MAX_DEPTH: usize = 12;

fn search(dir: &Path, pid: u32, depth: usize) -> Option<PathBuf> {
    if lists(dir, pid) {
        return Some(dir.to_path_buf());
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| search(&e.path(), pid, depth + 1))
}

/// The ids of every cgroup under `mount` (down to [`MAX_DEPTH`]).
pub fn live_cgroup_ids(mount: &Path) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    collect_ids(mount, 0, &mut ids);
    ids
}

fn collect_ids(dir: &Path, depth: usize, ids: &mut BTreeSet<u64>) {
    let Ok(meta) = std::fs::metadata(dir) else { return };
    ids.insert(meta.ino());
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        collect_ids(&e.path(), depth + 1, ids);
    }
}

/// Whether the cgroup `dir` directly holds process `pid`.
fn lists(dir: &Path, pid: u32) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .is_ok_and(|procs| procs.lines().any(|l| l.trim().parse::<u32>() == Ok(pid)))
}

/// The path of the `0::` (cgroup v2) line, without its leading `/`.
fn unified_path(text: &str) -> Option<PathBuf> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim().trim_start_matches('/')))
}

/// The agent's own cgroup, under `mount` (the node's cgroup hierarchy).
pub fn own(mount: &Path) -> anyhow::Result<Trusted> {
    let path = process_cgroup(mount, std::process::id()).context("finding the agent's own cgroup (is the node's cgroupfs mounted?)")?;
    let id = cgroup_id(&path)?;
    Ok(Trusted { id, path, reason: TrustReason::Agent })
}

/// `--probe-cgroup` paths (relative to `mount`; a leading `/` is allowed).
pub fn probes(mount: &Path, relative: &[PathBuf]) -> anyhow::Result<Vec<Trusted>> {
    relative
        .iter()
        .map(|rel| {
            let rel = rel.strip_prefix("/").unwrap_or(rel);
            if rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                bail!("--probe-cgroup {}: must not contain ..", rel.display());
            }
            let path = mount.join(rel);
            let id = cgroup_id(&path).with_context(|| format!("--probe-cgroup {}", rel.display()))?;
            Ok(Trusted { id, path, reason: TrustReason::Probe })
        })
        .collect()
}

/// The cgroup of the first process named `kubelet` (needs the host's PID namespace:
/// the DaemonSet has `hostPID`). None when there is none.
pub fn kubelet(mount: &Path) -> Option<Trusted> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let pid = entries.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "kubelet").then_some(pid)
    })?;
    let path = process_cgroup(mount, pid).ok()?;
    Some(Trusted { id: cgroup_id(&path).ok()?, path, reason: TrustReason::Probe })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_unified_line() {
        assert_eq!(unified_path("0::/system.slice/kubelet.service\n"), Some(PathBuf::from("system.slice/kubelet.service")));
        assert_eq!(unified_path("12:cpu:/x\n0::/\n"), Some(PathBuf::from("")));
        assert_eq!(unified_path("12:cpu:/x\n"), None);
    }

    #[test]
    fn refuses_escaping_probe_paths() {
        assert!(probes(Path::new("/sys/fs/cgroup"), &[PathBuf::from("../etc")]).is_err());
    }
}
