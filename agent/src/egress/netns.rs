//! Finding a pod's network namespace from its cgroup: a process in the pod cgroup (or
//! any cgroup below it) → `/proc/<pid>/ns/net`.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How deep below the pod cgroup processes are looked for (containers sit one or two
/// levels down).
const MAX_DEPTH: usize = 4;
/// How many cgroup directories are read at most while looking for a process.
const MAX_DIRS: usize = 256;

/// An open network namespace of a pod, and the process it was found through.
#[derive(Debug)]
pub struct PodNetns {
    /// `/proc/<pid>/ns/net`, open: keeps the namespace alive and is what setns takes.
    pub file: File,
    pub pid: u32,
    /// The namespace's inode number: identifies it.
    pub inode: u64,
}

impl PodNetns {
    /// True while the process it was found through still runs in the same network
    /// namespace (a restarted pod sandbox has a new one).
    pub fn still_current(&self) -> bool {
        netns_inode(self.pid).is_ok_and(|inode| inode == self.inode)
    }
}

/// The inode of process `pid`'s network namespace.
pub fn netns_inode(pid: u32) -> io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino())
}

/// Why a pod's network namespace was not found.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("no process in {} or below it", .0.display())]
    NoProcess(PathBuf),
    #[error("no readable network namespace of the processes in {}: {source}", .path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("the processes in {} are in the node's network namespace, not the pod's", .0.display())]
    OnlyNodeNetns(PathBuf),
}

/// Opens the network namespace of the first process found in `pod_cgroup` or below,
/// skipping processes in the namespace `not` (the node's, for a pod with its own: a
/// process may have joined the cgroup before the pod's namespace).
pub fn find(pod_cgroup: &Path, not: Option<u64>) -> Result<PodNetns, NetnsError> {
    let mut last_error = None;
    let mut skipped = false;
    let mut pending = vec![(pod_cgroup.to_path_buf(), 0usize)];
    let mut visited = 0;
    while let Some((dir, depth)) = pending.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            break;
        }
        for pid in pids_in(&dir) {
            match open(pid) {
                Ok(netns) if Some(netns.inode) == not => skipped = true,
                Ok(netns) => return Ok(netns),
                Err(error) => last_error = Some(error),
            }
        }
        if depth < MAX_DEPTH {
            pending.extend(subdirs(&dir).into_iter().map(|d| (d, depth + 1)));
        }
    }
    match (last_error, skipped) {
        (_, true) => Err(NetnsError::OnlyNodeNetns(pod_cgroup.to_path_buf())),
        (Some(source), false) => Err(NetnsError::Unreadable { path: pod_cgroup.to_path_buf(), source }),
        (None, false) => Err(NetnsError::NoProcess(pod_cgroup.to_path_buf())),
    }
}

fn open(pid: u32) -> io::Result<PodNetns> {
    let file = File::open(format!("/proc/{pid}/ns/net"))?;
    let inode = file.metadata()?.ino();
    Ok(PodNetns { file, pid, inode })
}

/// The processes listed in a cgroup's `cgroup.procs` (none if it cannot be read).
fn pids_in(dir: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    text.lines().filter_map(|line| line.trim().parse().ok()).collect()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_netns_is_found_and_current() {
        let pid = std::process::id();
        let netns = open(pid).unwrap();
        assert_eq!(netns.inode, netns_inode(pid).unwrap());
        assert!(netns.still_current());
    }

    #[test]
    fn an_empty_cgroup_has_no_process() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("container")).unwrap();
        std::fs::write(dir.path().join("container/cgroup.procs"), "").unwrap();
        assert!(matches!(find(dir.path(), None), Err(NetnsError::NoProcess(_))));
    }

    #[test]
    fn a_process_below_the_pod_cgroup_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/cgroup.procs"), format!("{}\n", std::process::id())).unwrap();
        let netns = find(dir.path(), None).unwrap();
        assert_eq!(netns.pid, std::process::id());
        // Not accepted when that namespace is excluded (a pod's must not be the node's).
        let err = find(dir.path(), Some(netns.inode)).unwrap_err();
        assert!(matches!(err, NetnsError::OnlyNodeNetns(_)), "{err}");
    }
}
