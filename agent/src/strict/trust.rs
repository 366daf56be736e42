//! The cgroups whose sockets may open connections to guarded pods: the agent's own
//! (its proxy dials them) and the probe cgroups (the kubelet's, for health checks).
//!
//! A cgroup v2 id is the inode number of its directory, which is what
//! `bpf_skb_cgroup_id` reports for a packet's socket.

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

/// The cgroup v2 path of process `pid` (`0::/path` in `/proc/<pid>/cgroup`), relative
/// to the cgroup2 mount.
pub fn process_cgroup(pid: &str) -> anyhow::Result<PathBuf> {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    unified_path(&text).with_context(|| format!("{file} names no cgroup v2 path"))
}

/// The path of the `0::` (cgroup v2) line, without its leading `/`.
fn unified_path(text: &str) -> Option<PathBuf> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim().trim_start_matches('/')))
}

/// The agent's own cgroup, under `mount`.
pub fn own(mount: &Path) -> anyhow::Result<Trusted> {
    let path = mount.join(process_cgroup("self")?);
    Ok(Trusted { id: cgroup_id(&path)?, path, reason: TrustReason::Agent })
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
        let name = e.file_name().into_string().ok()?;
        name.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "kubelet").then_some(name)
    })?;
    let path = mount.join(process_cgroup(&pid).ok()?);
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
