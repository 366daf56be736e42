//! cgroup v2 helpers: finding the mount, kubelet-style pod cgroup paths,
//! and tearing down cgroup trees (killing their processes first).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Mount point of the cgroup v2 hierarchy, read from `/proc/self/mounts`.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (_dev, Some(dir), Some(fstype)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if fstype == "cgroup2" {
            return Ok(PathBuf::from(dir));
        }
    }
    bail!("no cgroup2 filesystem is mounted (see /proc/self/mounts); the test bed needs cgroup v2")
}

/// How pod cgroups are laid out under the bed's cgroup root (the kubelet cgroup drivers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupLayout {
    /// systemd driver with containerd:
    /// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope`.
    #[default]
    Systemd,
    /// cgroupfs driver: `kubepods/besteffort/pod<uid>/<id>`.
    Cgroupfs,
}

impl CgroupLayout {
    /// Relative path of a container's cgroup for pod `uid` and 64-hex container id.
    pub fn container_path(self, uid: &str, container_id: &str) -> PathBuf {
        match self {
            CgroupLayout::Systemd => PathBuf::from("kubepods.slice")
                .join("kubepods-besteffort.slice")
                .join(format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_")))
                .join(format!("cri-containerd-{container_id}.scope")),
            CgroupLayout::Cgroupfs => PathBuf::from("kubepods")
                .join("besteffort")
                .join(format!("pod{uid}"))
                .join(container_id),
        }
    }
}

/// Moves process `pid` into the cgroup directory `dir`.
pub fn enter(dir: &Path, pid: u32) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).with_context(|| format!("writing {}", procs.display()))
}

/// Pids currently in the cgroup `dir` (not its descendants).
pub fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every process in the tree `dir` and removes the tree, deepest first.
/// A missing directory is not an error.
pub fn destroy_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    kill_tree(dir);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match remove_tree(dir) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("removing cgroup tree {}", dir.display())))
            }
            Err(_) => {
                kill_tree(dir);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Sends SIGKILL to every process in the tree (via `cgroup.kill` when the
/// kernel has it, else pid by pid).
fn kill_tree(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for sub in subdirs_deepest_first(dir) {
        for pid in procs(&sub) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    for sub in subdirs_deepest_first(dir) {
        if sub.exists() {
            std::fs::remove_dir(&sub).with_context(|| format!("rmdir {}", sub.display()))?;
        }
    }
    Ok(())
}

/// `dir` and all its sub-directories, children before parents.
fn subdirs_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect(dir, &mut out);
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}
