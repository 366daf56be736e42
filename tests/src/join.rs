//! What a process started "inside a pod" does first: join the pod's cgroup,
//! then enter the pod's network namespace with setns(2).
//!
//! Joining the cgroup first matters: the cgroup is written through the host's
//! view of cgroupfs, and setns never remounts anything (unlike `ip netns exec`).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{Context, Result};

/// Moves the calling process into `cgroup` (if given), then the calling
/// thread into the named network namespace `netns` (if given).
///
/// Call it before any other thread exists: setns only moves the calling thread.
pub fn join(cgroup: Option<&Path>, netns: Option<&str>) -> Result<()> {
    if let Some(dir) = cgroup {
        crate::cgroup::enter(dir, std::process::id())?;
    }
    if let Some(name) = netns {
        let path = crate::netns::netns_path(name);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns into {name}"))?;
    }
    Ok(())
}
